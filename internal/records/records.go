// Package records decodes what the plugin hands to Fluent Bit, for tests and
// benchmarks. It uses an independent msgpack library on purpose: a bug in the
// plugin's hand-written encoder must not be mirrored by the decoder that checks it.
package records

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Record is one decoded event of Fluent Bit's v2 form [[time, {}], {record}].
type Record struct {
	Time           time.Time
	Log            string
	Stream         string
	ContainerID    string
	ContainerName  string
	ContainerImage string
	Truncated      bool
	// Fields holds every key of the record, the ones above included.
	Fields map[string]any
}

// eventTime is Fluent Bit's EventTime, msgpack ext type 0.
type eventTime struct{ t time.Time }

func init() {
	msgpack.RegisterExtDecoder(0, eventTime{}, func(d *msgpack.Decoder, v reflect.Value, extLen int) error {
		if extLen != 8 {
			return fmt.Errorf("event time ext has %d bytes, want 8", extLen)
		}
		var b [8]byte
		if err := d.ReadFull(b[:]); err != nil {
			return err
		}
		sec, nsec := binary.BigEndian.Uint32(b[:4]), binary.BigEndian.Uint32(b[4:])
		v.Set(reflect.ValueOf(eventTime{time.Unix(int64(sec), int64(nsec)).UTC()}))
		return nil
	})
}

// Decode decodes a concatenation of v2 events.
func Decode(b []byte) ([]Record, error) {
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	var out []Record
	for {
		var ev []any
		err := dec.Decode(&ev)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("event %d: %w", len(out), err)
		}
		r, err := fromEvent(ev)
		if err != nil {
			return out, fmt.Errorf("event %d: %w", len(out), err)
		}
		out = append(out, r)
	}
}

func fromEvent(ev []any) (Record, error) {
	if len(ev) != 2 {
		return Record{}, fmt.Errorf("event has %d elements, want 2", len(ev))
	}
	header, ok := ev[0].([]any)
	if !ok || len(header) != 2 {
		return Record{}, fmt.Errorf("event header is %T, want [time, metadata]", ev[0])
	}
	et, ok := header[0].(*eventTime)
	if !ok {
		if v, ok2 := header[0].(eventTime); ok2 {
			et = &v
		} else {
			return Record{}, fmt.Errorf("event time is %T, want ext type 0", header[0])
		}
	}
	if _, ok := header[1].(map[string]any); !ok {
		return Record{}, fmt.Errorf("event metadata is %T, want a map", header[1])
	}
	fields, ok := ev[1].(map[string]any)
	if !ok {
		return Record{}, fmt.Errorf("record is %T, want a map", ev[1])
	}
	r := Record{Time: et.t, Fields: fields}
	str := func(k string) string {
		switch v := fields[k].(type) {
		case string:
			return v
		case []byte:
			return string(v)
		}
		return ""
	}
	r.Log, r.Stream = str("log"), str("stream")
	r.ContainerID, r.ContainerName, r.ContainerImage = str("container_id"), str("container_name"), str("container_image")
	r.Truncated, _ = fields["log_truncated"].(bool)
	return r, nil
}

// Walk calls fn with the time (ns since the epoch), container_id and log of
// each event of b, and returns how many there were. It is Decode without
// its allocations, for the benchmarks' millions of records; the slices are
// valid until fn returns.
func Walk(b []byte, fn func(ts int64, container, log []byte)) (int, error) {
	d := msgpack.NewDecoder(bytes.NewReader(b))
	var key, container, log []byte
	var tb [8]byte
	for n := 0; ; n++ {
		_, err := d.DecodeArrayLen()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		_, err2 := d.DecodeArrayLen()
		typ, l, err3 := d.DecodeExtHeader()
		fields, err4 := 0, errors.Join(err, err2, err3, d.ReadFull(tb[:]), d.Skip()) // the time, the metadata
		if err4 == nil && (typ != 0 || l != 8) {
			err4 = fmt.Errorf("ext %d of %d bytes, not an EventTime", typ, l)
		}
		if fields, err = d.DecodeMapLen(); err4 != nil || err != nil {
			return n, fmt.Errorf("event %d: %w", n, errors.Join(err4, err))
		}
		container, log = container[:0], log[:0]
		for range fields {
			if key, err = readStr(d, key); err != nil {
				return n, err
			}
			switch string(key) {
			case "log":
				log, err = readStr(d, log)
			case "container_id":
				container, err = readStr(d, container)
			default:
				err = d.Skip()
			}
			if err != nil {
				return n, err
			}
		}
		sec, nsec := binary.BigEndian.Uint32(tb[:4]), binary.BigEndian.Uint32(tb[4:])
		fn(int64(sec)*1e9+int64(nsec), container, log)
	}
}

// readStr reads a str or bin value into buf.
func readStr(d *msgpack.Decoder, buf []byte) ([]byte, error) {
	n, err := d.DecodeBytesLen()
	if err != nil || n < 0 {
		return buf[:0], err
	}
	buf = slices.Grow(buf[:0], n)[:n]
	return buf, d.ReadFull(buf)
}
