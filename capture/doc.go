// Package capture reads the logs of a host's containers through
// short-lived streams and hands them to Fluent Bit as encoded records. It
// sees the daemon only through Source, so it builds without cgo and without
// the Docker SDK.
//
// # The data path
//
//	Source (events, list)
//	   |
//	supervisor        one goroutine: discovers containers, owns the
//	   |              containers map, starts and stops one reader each
//	   v
//	readers           one goroutine per container: open a logs stream,
//	   |              decode, join long lines, encode into chunks
//	   v
//	queue             chunks of records with the position after their last
//	   |              line, bounded in bytes: readers wait, nothing is lost
//	   v
//	Drain, Commit     Fluent Bit's collect takes a Batch; once it has taken
//	   |              it, Commit advances the containers' positions
//	   v
//	store (DB)        the committed positions, written to the positions
//	                  file at most once per dbWriteInterval, DB_Margin behind
//
// A reader's life is a few named states (see readerState and next): it
// inspects the container, or opens its stream from the head with the
// inspect alongside; then it seeds, follows or drains one stream at a time,
// and decides from how each one ended what comes next.
//
// # Resume
//
// A stream is short-lived: it is closed at its age (StreamRefresh), when
// the daemon ends it, or when it fails, and the reader opens the next one
// where the last ended. The words of that resume, used throughout the
// package:
//
//   - L: the last line read from a container (its stream and stamp). All
//     pieces of one line share its stamp, so (stream, stamp) names it.
//   - position: per stream, the stamp of its last line read and how many
//     entries at that stamp were read (the count), and L. Kept per stream
//     because the daemon stamps stdout and stderr in separate goroutines,
//     so their stamps interleave out of order in the log file.
//   - whole seconds: Podman's API stamps to the second, so every entry of
//     a second shares one stamp; there an entry at a stream's stamp was
//     read only while no more than the count of them have been met (runs),
//     and L is found by the rank of its first entry at its stamp. Docker
//     stamps to the nanosecond: the stamp alone tells, as a count of one.
//     A chunk carries the position after its last line; it is committed
//     only when Fluent Bit has taken the chunk.
//   - Reading is a prefix of the log in file order: everything before L
//     was read, nothing after it was. Resume never reads the log from its
//     start again.
//   - seek: a resume opens the stream with since=<earliest stream
//     position> and tail=K, and skips entries until it meets L again.
//   - tail window: that K, firstTail at first. Meeting an entry that must
//     come after L before L means the window was too short: the stream
//     reopens with K tailGrowth times larger. So the daemon reads
//     O(new lines) per refresh, whatever the size of the log.
//   - full: past maxTail, the resume drops the window and reads everything
//     from since; if L is no longer there (the log was rotated away), it
//     goes on after L by time. A position stamped to the whole second
//     resumes full at once, from wholeSecondSlack before its second: a
//     window that begins inside the second cannot be told from one that
//     does not.
//   - inversion margin (inversionMargin): how far a stamp of one stream
//     can fall behind one of the other stream written before it. A stream
//     without a position yet is judged by L's stamp and the margin: what
//     was written before L is stamped at most the margin after it, what
//     comes after L at most the margin before it.
//   - open lines: a long line of one stream begun before L but not yet
//     delivered (its writer had not finished it). Its later pieces carry
//     its first stamp, so a resume reaches back to it and takes those
//     pieces again; the position records its stamp and how many pieces
//     came before L.
//   - fromNow: a container running when capture starts, without
//     Read_From_Head, is read from now on. Its first stream, the seed,
//     reads only the last seedTail entries, to learn where the log ends.
//   - since: without a position, where reading starts (0: the log's head;
//     the moment a rename took the container into the filter; the watch's
//     start after a restart).
//   - Repeats: after L, entries at or before a stream's position are
//     dropped, so the daemon's own repeats (Docker 20.10 around a rotation)
//     do not reach Fluent Bit.
//
// The tuning constants named here are in tuning.go, each with its reason.
package capture
