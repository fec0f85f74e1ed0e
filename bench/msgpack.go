package main

// A small msgpack walker for the events a collect hands over, written for
// speed (millions of records per run) and independently of the plugin's
// encoder. internal/records, the reflection-based decoder the tests use,
// checks it on the first collect of every run.

import (
	"encoding/binary"
	"errors"
	"fmt"
)

var errShort = errors.New("msgpack: buffer ends inside a value")

type event struct {
	ts        int64 // ns since the epoch
	log       []byte
	container []byte
	stream    []byte
}

type mpReader struct {
	b   []byte
	off int
}

func (r *mpReader) need(n int) error {
	if r.off+n > len(r.b) {
		return errShort
	}
	return nil
}

func (r *mpReader) byte1() (byte, error) {
	if err := r.need(1); err != nil {
		return 0, err
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *mpReader) uint(n int) (int, error) {
	if err := r.need(n); err != nil {
		return 0, err
	}
	var v uint64
	switch n {
	case 1:
		v = uint64(r.b[r.off])
	case 2:
		v = uint64(binary.BigEndian.Uint16(r.b[r.off:]))
	case 4:
		v = uint64(binary.BigEndian.Uint32(r.b[r.off:]))
	case 8:
		v = binary.BigEndian.Uint64(r.b[r.off:])
	}
	r.off += n
	return int(v), nil
}

func (r *mpReader) take(n int) ([]byte, error) {
	if n < 0 {
		return nil, errShort
	}
	if err := r.need(n); err != nil {
		return nil, err
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s, nil
}

// arrayLen reads an array header.
func (r *mpReader) arrayLen() (int, error) {
	c, err := r.byte1()
	if err != nil {
		return 0, err
	}
	switch {
	case c&0xf0 == 0x90:
		return int(c & 0x0f), nil
	case c == 0xdc:
		return r.uint(2)
	case c == 0xdd:
		return r.uint(4)
	}
	return 0, fmt.Errorf("msgpack: 0x%02x at %d is not an array", c, r.off-1)
}

func (r *mpReader) mapLen() (int, error) {
	c, err := r.byte1()
	if err != nil {
		return 0, err
	}
	switch {
	case c&0xf0 == 0x80:
		return int(c & 0x0f), nil
	case c == 0xde:
		return r.uint(2)
	case c == 0xdf:
		return r.uint(4)
	}
	return 0, fmt.Errorf("msgpack: 0x%02x at %d is not a map", c, r.off-1)
}

// str reads a str (or bin) value.
func (r *mpReader) str() ([]byte, error) {
	c, err := r.byte1()
	if err != nil {
		return nil, err
	}
	var n int
	switch {
	case c&0xe0 == 0xa0:
		n = int(c & 0x1f)
	case c == 0xd9 || c == 0xc4:
		n, err = r.uint(1)
	case c == 0xda || c == 0xc5:
		n, err = r.uint(2)
	case c == 0xdb || c == 0xc6:
		n, err = r.uint(4)
	default:
		return nil, fmt.Errorf("msgpack: 0x%02x at %d is not a string", c, r.off-1)
	}
	if err != nil {
		return nil, err
	}
	return r.take(n)
}

// skip passes over any one value.
func (r *mpReader) skip() error {
	c, err := r.byte1()
	if err != nil {
		return err
	}
	var n int
	switch {
	case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
		return nil
	case c&0xf0 == 0x80:
		return r.skipN(2 * int(c&0x0f))
	case c&0xf0 == 0x90:
		return r.skipN(int(c & 0x0f))
	case c&0xe0 == 0xa0:
		_, err = r.take(int(c & 0x1f))
		return err
	}
	switch c {
	case 0xcc, 0xd0:
		_, err = r.take(1)
	case 0xcd, 0xd1:
		_, err = r.take(2)
	case 0xce, 0xd2, 0xca:
		_, err = r.take(4)
	case 0xcf, 0xd3, 0xcb:
		_, err = r.take(8)
	case 0xd9, 0xc4:
		if n, err = r.uint(1); err == nil {
			_, err = r.take(n)
		}
	case 0xda, 0xc5:
		if n, err = r.uint(2); err == nil {
			_, err = r.take(n)
		}
	case 0xdb, 0xc6:
		if n, err = r.uint(4); err == nil {
			_, err = r.take(n)
		}
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16
		_, err = r.take(1 + 1<<(c-0xd4))
	case 0xc7, 0xc8, 0xc9: // ext 8, 16, 32
		if n, err = r.uint(1 << (c - 0xc7)); err == nil {
			_, err = r.take(1 + n)
		}
	case 0xdc:
		if n, err = r.uint(2); err == nil {
			err = r.skipN(n)
		}
	case 0xdd:
		if n, err = r.uint(4); err == nil {
			err = r.skipN(n)
		}
	case 0xde:
		if n, err = r.uint(2); err == nil {
			err = r.skipN(2 * n)
		}
	case 0xdf:
		if n, err = r.uint(4); err == nil {
			err = r.skipN(2 * n)
		}
	default:
		err = fmt.Errorf("msgpack: unknown type 0x%02x at %d", c, r.off-1)
	}
	return err
}

func (r *mpReader) skipN(n int) error {
	for range n {
		if err := r.skip(); err != nil {
			return err
		}
	}
	return nil
}

// eventTime reads Fluent Bit's EventTime (fixext 8, type 0) or an integer
// of seconds.
func (r *mpReader) eventTime() (int64, error) {
	c, err := r.byte1()
	if err != nil {
		return 0, err
	}
	switch {
	case c == 0xd7:
		b, err := r.take(9)
		if err != nil {
			return 0, err
		}
		if b[0] != 0 {
			return 0, fmt.Errorf("msgpack: ext type %d, want EventTime (0)", b[0])
		}
		sec, nsec := binary.BigEndian.Uint32(b[1:]), binary.BigEndian.Uint32(b[5:])
		return int64(sec)*1e9 + int64(nsec), nil
	case c <= 0x7f:
		return int64(c) * 1e9, nil
	case c == 0xce:
		n, err := r.uint(4)
		return int64(n) * 1e9, err
	}
	return 0, fmt.Errorf("msgpack: 0x%02x at %d is not an event time", c, r.off-1)
}

// walkEvents calls fn for each event of b, [[time, {meta}], {record}] (v2)
// or [time, {record}] (v1). It returns the number of events.
func walkEvents(b []byte, fn func(*event)) (int, error) {
	r := &mpReader{b: b}
	var ev event
	n := 0
	for r.off < len(r.b) {
		start := r.off
		l, err := r.arrayLen()
		if err != nil {
			return n, err
		}
		if l != 2 {
			return n, fmt.Errorf("event at %d has %d elements, want 2", start, l)
		}
		ev = event{}
		if r.off < len(r.b) && r.b[r.off]&0xf0 == 0x90 { // v2 header
			hl, _ := r.arrayLen()
			if hl != 2 {
				return n, fmt.Errorf("event header at %d has %d elements", start, hl)
			}
			if ev.ts, err = r.eventTime(); err != nil {
				return n, err
			}
			if err = r.skip(); err != nil { // metadata
				return n, err
			}
		} else if ev.ts, err = r.eventTime(); err != nil {
			return n, err
		}
		fields, err := r.mapLen()
		if err != nil {
			return n, err
		}
		for range fields {
			k, err := r.str()
			if err != nil {
				return n, err
			}
			var dst *[]byte
			switch string(k) {
			case "log":
				dst = &ev.log
			case "container_id":
				dst = &ev.container
			case "stream":
				dst = &ev.stream
			}
			if dst == nil {
				if err := r.skip(); err != nil {
					return n, err
				}
				continue
			}
			if *dst, err = r.str(); err != nil {
				return n, err
			}
		}
		fn(&ev)
		n++
	}
	return n, nil
}
