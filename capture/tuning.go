package capture

import "time"

// The reader's, the queue's, the decoder's and the supervisor's tuning, in
// one place, each with why it has its value. What the daemon does, and
// what follows from it, comes first.

// What the daemon does.
const (
	// pieceLen is where the daemon cuts a long line (json-file's 16 KiB
	// buffer): each piece is its own entry, only the last ends in '\n'.
	pieceLen = 16 * 1024
	// inversionMargin bounds how far a stamp of one stream can fall behind
	// one of the other stream that the file holds before it. The daemon
	// stamps before taking its write lock, so inversions are
	// microseconds; a second is far beyond what was ever measured.
	inversionMargin = Timestamp(time.Second)
)

// Resume (see the package documentation).
const (
	// seedTail is how many entries from the end the first read of a
	// container read from now on takes, only to learn where the log ends:
	// enough for both streams to have a line there.
	seedTail = 64
	// firstTail is the tail window of a resume: a quiet container's whole
	// gap fits, and the daemon reads that much from the end in about a
	// millisecond.
	firstTail = 256
	// tailGrowth multiplies the window when it did not reach back to L:
	// few reopens however far L is.
	tailGrowth = 8
	// maxTail is the largest window before a resume reads the whole log
	// with since alone: 2M entries, past which a window costs the daemon
	// as much as since.
	maxTail = 1 << 21
	// wholeSecondSlack is how far before a second a resume from a position
	// stamped to it begins. Podman keeps the lines stamped strictly after
	// since, comparing the nanoseconds it stores with a since it parses to
	// about a microsecond: a line written in the very first microsecond of
	// the second would be left out, and with it the count would skip an
	// unread line. The lines of the slack are stamped a second earlier and
	// skipped.
	wholeSecondSlack = Timestamp(time.Millisecond)
	// seekBound is how long a resume that has read nothing yet may stay
	// silent: the daemon may be scanning its log for since (about a
	// minute for 1.7 GB). Doubled after each such resume cut while still
	// silent, up to maxSeekBound, so a scan of any size ends once.
	seekBound    = time.Minute
	maxSeekBound = 8 * time.Minute
)

// Reading a stream.
const (
	// minReadBuf is the read buffer's initial size: large enough for many
	// small lines per Read, and for the transport's own 64 KiB buffer.
	minReadBuf = 64 * 1024
	// maxFramePieces: a frame longer than this many pieces (and than the
	// line bound) is not a log entry. The daemon's pieces may be a few
	// bytes longer than pieceLen; four leave room for any driver's.
	maxFramePieces = 4
	// chunkTarget is the size at which a reader hands its chunk over even
	// though more input is buffered: big enough to make the queue's lock
	// negligible per line, small enough to keep the hand-off smooth.
	chunkTarget = 256 * 1024
	// smallChunk: a chunk handed over below this size (before a Read that
	// may block) is queued as a copy of its own size, so a quiet
	// container's few lines do not pin a whole chunk buffer.
	smallChunk = chunkTarget / 4
	// maxPooledChunk: a chunk buffer grown beyond this (by a long line)
	// is not pooled again, so the pool holds no outsized buffer.
	maxPooledChunk = 4 * chunkTarget
	// clockStepAfter is how long lines stamped before a stream's position
	// may keep coming before it is reported: the daemon's own repeats
	// (Docker 20.10 around a rotation) come in a burst, lines written
	// after its clock stepped back keep coming as long as the container
	// writes.
	clockStepAfter = time.Second
	// maxMalformedRereads: bytes that are no frame of a multiplexed stream
	// come from the connection, not the log (the daemon writes the
	// headers), so the stream is read again from the last good line; met
	// at the same place this many times more, they are the daemon's own
	// and are skipped, so the reader never stalls on them.
	maxMalformedRereads = 3
	// behindFraction: a stream whose newest line is older than the refresh
	// period divided by this is behind, so its refresh waits until it
	// catches up; half a period leaves the other half to catch up in.
	behindFraction = 2
	// wholeSecondLag is how long after a stamp cut to the second (Podman)
	// its line may have been written.
	wholeSecondLag = Timestamp(time.Second)
)

// Retries.
const (
	// A reader whose streams fail waits minBackoff, doubled after each
	// failure that read nothing, up to maxBackoff: a failing daemon is not
	// hammered, a recovered one is read again within half a minute.
	minBackoff = 250 * time.Millisecond
	maxBackoff = 30 * time.Second
	// The events stream reconnects after minReconnect, doubled up to
	// maxReconnect: a reconnect lists every container, which costs the
	// daemon more than a reader's retry.
	minReconnect = time.Second
	maxReconnect = 30 * time.Second
)

// The supervisor and the positions file.
const (
	// maxStoppedReads bounds the logs of stopped containers read at once
	// at start-up (Read_From_Head): each is a stream and a reader's
	// buffers, and a host can keep thousands of exited containers. A few
	// at a time keep the daemon's disk busy without a burst of
	// connections.
	maxStoppedReads = 4
	// dbWriteInterval is the most often the positions file is written
	// while positions change: a crash repeats at most this much beyond
	// DB_Margin, and the disk sees one write a second.
	dbWriteInterval = time.Second
)
