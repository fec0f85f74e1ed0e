package capture

import "encoding/binary"

// Records are encoded by hand into Fluent Bit's v2 event form,
// [[time, {}], {record}], because the shape is fixed: a few appends into a
// reused buffer cost no allocation per line, and the fields that are
// constant per container are encoded once.

const (
	mpFixArray2 = 0x92
	mpFixExt8   = 0xd7
	mpEventTime = 0x00 // Fluent Bit's EventTime ext type
	mpFixMap0   = 0x80
	mpFixMap    = 0x80
	mpTrue      = 0xc3
	mpStr8      = 0xd9
	mpStr16     = 0xda
	mpStr32     = 0xdb
	mpFixStr    = 0xa0
)

// recordFields is how many fields every record has; a truncated one has one
// more.
const recordFields = 5

var (
	keyLog          = appendStr(nil, "log")
	fieldStdout     = appendStr(appendStr(nil, "stream"), "stdout")
	fieldStderr     = appendStr(appendStr(nil, "stream"), "stderr")
	fieldsTruncated = append(appendStr(nil, "log_truncated"), mpTrue)
)

// containerFields pre-encodes the key/value pairs that are the same for
// every record of one container.
func containerFields(c Container) []byte {
	b := appendStr(nil, "container_id")
	b = appendStr(b, c.ID)
	b = appendStr(b, "container_name")
	b = appendStr(b, c.Name)
	b = appendStr(b, "container_image")
	return appendStr(b, c.Image)
}

// appendRecord appends one event. fixed is the container's pre-encoded
// fields.
func appendRecord(dst []byte, ts Timestamp, line []byte, stream StreamKind, truncated bool, fixed []byte) []byte {
	sec, nsec := uint32(int64(ts)/1e9), uint32(int64(ts)%1e9)
	fields := byte(recordFields)
	if truncated {
		fields++
	}
	dst = append(dst, mpFixArray2, mpFixArray2, mpFixExt8, mpEventTime)
	dst = binary.BigEndian.AppendUint32(dst, sec)
	dst = binary.BigEndian.AppendUint32(dst, nsec)
	dst = append(dst, mpFixMap0, mpFixMap|fields)
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
	return append(dst, fixed...)
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
