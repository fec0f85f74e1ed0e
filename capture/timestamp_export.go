package capture

// ParseTimestamp parses the stamp that starts b, as the logs API writes it
// with timestamps=1, and returns it with the bytes it took, the separating
// space included. A Source that builds such a stream itself (capture/jsonfile)
// checks its stamps with the same parser the reader uses.
func ParseTimestamp(b []byte) (Timestamp, int, error) { return parseTimestamp(b) }
