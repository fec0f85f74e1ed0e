package records

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// event encodes [[EventTime, {}], fields] as Fluent Bit's v2 form.
func event(t *testing.T, enc *msgpack.Encoder, at time.Time, fields map[string]any) {
	t.Helper()
	var tb [8]byte
	binary.BigEndian.PutUint32(tb[:4], uint32(at.Unix()))
	binary.BigEndian.PutUint32(tb[4:], uint32(at.Nanosecond()))
	err := enc.EncodeArrayLen(2)
	if err == nil {
		err = enc.EncodeArrayLen(2)
	}
	if err == nil {
		err = enc.EncodeExtHeader(0, 8)
	}
	if err == nil {
		_, err = enc.Writer().Write(tb[:])
	}
	if err == nil {
		err = enc.EncodeMapLen(0)
	}
	if err == nil {
		err = enc.Encode(fields)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestWalkReadsWhatDecodeReads(t *testing.T) {
	var b bytes.Buffer
	enc := msgpack.NewEncoder(&b)
	t0 := time.Unix(1700000000, 123456789).UTC()
	event(t, enc, t0, map[string]any{"log": "seq=1 stream=stdout", "container_id": "c1", "stream": "stdout",
		"log_truncated": true, "labels": map[string]any{"a": "b"}, "n": 7})
	event(t, enc, t0.Add(time.Second), map[string]any{"container_id": "c2", "log": "seq=2 stream=stderr"})
	want, err := Decode(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	var got []Record
	n, err := Walk(b.Bytes(), func(ts int64, container, log []byte) {
		got = append(got, Record{Time: time.Unix(0, ts).UTC(), ContainerID: string(container), Log: string(log)})
	})
	if err != nil || n != len(want) || len(got) != len(want) {
		t.Fatalf("Walk: %d events, %d calls, %v; Decode: %d", n, len(got), err, len(want))
	}
	for i := range want {
		if !got[i].Time.Equal(want[i].Time) || got[i].ContainerID != want[i].ContainerID || got[i].Log != want[i].Log {
			t.Errorf("event %d: Walk %+v, Decode %+v", i, got[i], want[i])
		}
	}
	if _, err := Walk(b.Bytes()[:b.Len()-3], func(int64, []byte, []byte) {}); err == nil {
		t.Error("Walk of a cut buffer: no error")
	}
}
