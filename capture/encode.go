package capture

import (
	"encoding/binary"
	"slices"
)

// Records are encoded by hand into Fluent Bit's v2 event form,
// [[time, {}], {record}], because the shape is fixed: a few appends into a
// reused buffer cost no allocation per line, and the fields that are
// constant per container are encoded once.

const (
	mpFixArray2 = 0x92
	mpFixExt8   = 0xd7
	mpEventTime = 0x00 // Fluent Bit's EventTime ext type
	mpFixMap    = 0x80 // | the number of pairs, below 16
	mpMap16     = 0xde
	mpMap32     = 0xdf
	mpTrue      = 0xc3
	mpStr8      = 0xd9
	mpStr16     = 0xda
	mpStr32     = 0xdb
	mpFixStr    = 0xa0
)

// lineFields is how many fields of a record change with each line (log,
// stream); a truncated one has one more. The rest are the container's
// fixedFields.
const lineFields = 2

// Compose's labels and the record fields that carry them.
const (
	labelComposeProject = "com.docker.compose.project"
	labelComposeService = "com.docker.compose.service"
)

var (
	keyLog          = appendStr(nil, "log")
	fieldStdout     = appendStr(appendStr(nil, "stream"), "stdout")
	fieldStderr     = appendStr(appendStr(nil, "stream"), "stderr")
	fieldsTruncated = append(appendStr(nil, "log_truncated"), mpTrue)
)

// Metadata selects what of a container's labels its records carry besides
// its id, name and image. Environment variables are never read.
type Metadata struct {
	// Labels puts every label in a nested map field "labels".
	Labels bool
	// LabelKeys puts only these labels in "labels" (when Labels is off).
	LabelKeys []string
	// ComposeFields adds compose_project and compose_service from
	// Compose's labels, when the container has them.
	ComposeFields bool
}

// fixedFields are the pre-encoded key/value pairs that every record of one
// container carries, and how many pairs they are: the record's map header
// counts them, so it differs between containers.
type fixedFields struct {
	data []byte
	n    int
}

// containerFields pre-encodes the fields that are the same for every
// record of one container: encoded once per container (and rename), so
// labels cost nothing per line. A nil md adds no label.
func containerFields(c Container, md *Metadata) fixedFields {
	b := appendStr(nil, "container_id")
	b = appendStr(b, c.ID)
	b = appendStr(b, "container_name")
	b = appendStr(b, c.Name)
	b = appendStr(b, "container_image")
	b = appendStr(b, c.Image)
	n := 3
	if md == nil {
		return fixedFields{data: b, n: n}
	}
	if md.ComposeFields {
		for _, f := range [...]struct{ label, field string }{
			{labelComposeProject, "compose_project"},
			{labelComposeService, "compose_service"},
		} {
			if v, ok := c.Labels[f.label]; ok {
				b = appendStr(appendStr(b, f.field), v)
				n++
			}
		}
	}
	if keys := md.labelKeys(c.Labels); len(keys) > 0 {
		b = appendMapHeader(appendStr(b, "labels"), len(keys))
		for _, k := range keys {
			b = appendStr(appendStr(b, k), c.Labels[k])
		}
		n++
	}
	return fixedFields{data: b, n: n}
}

// labelKeys returns the keys of the labels that go into records, sorted so
// that every record of a container encodes them alike.
func (md *Metadata) labelKeys(labels map[string]string) []string {
	var keys []string
	switch {
	case md.Labels:
		for k := range labels {
			keys = append(keys, k)
		}
	default:
		for _, k := range md.LabelKeys {
			if _, ok := labels[k]; ok && !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	return keys
}

// appendRecord appends one event. fixed is the container's pre-encoded
// fields.
func appendRecord(dst []byte, ts Timestamp, line []byte, stream StreamKind, truncated bool, fixed fixedFields) []byte {
	sec, nsec := uint32(int64(ts)/1e9), uint32(int64(ts)%1e9)
	fields := lineFields + fixed.n
	if truncated {
		fields++
	}
	dst = append(dst, mpFixArray2, mpFixArray2, mpFixExt8, mpEventTime)
	dst = binary.BigEndian.AppendUint32(dst, sec)
	dst = binary.BigEndian.AppendUint32(dst, nsec)
	dst = appendMapHeader(append(dst, mpFixMap), fields) // mpFixMap with no pair: the event's empty metadata
	dst = append(dst, keyLog...)
	dst = appendStrHeader(dst, len(line))
	dst = append(dst, line...)
	if stream == Stderr {
		dst = append(dst, fieldStderr...)
	} else {
		dst = append(dst, fieldStdout...)
	}
	if truncated {
		dst = append(dst, fieldsTruncated...)
	}
	return append(dst, fixed.data...)
}

func appendMapHeader(dst []byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, mpFixMap|byte(n))
	case n < 1<<16:
		return binary.BigEndian.AppendUint16(append(dst, mpMap16), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(dst, mpMap32), uint32(n))
	}
}

func appendStr(dst []byte, s string) []byte {
	return append(appendStrHeader(dst, len(s)), s...)
}

func appendStrHeader(dst []byte, n int) []byte {
	switch {
	case n < 32:
		return append(dst, mpFixStr|byte(n))
	case n < 1<<8:
		return append(dst, mpStr8, byte(n))
	case n < 1<<16:
		return binary.BigEndian.AppendUint16(append(dst, mpStr16), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(dst, mpStr32), uint32(n))
	}
}
