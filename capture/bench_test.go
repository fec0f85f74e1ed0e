package capture

// Benchmarks of the reader's per-line work on a recorded-like stream:
// decode (frame header + timestamp) + position checks + long-line merge +
// encode, without the daemon. Run them on one core:
//
//	go test ./capture -run '^$' -bench '^BenchmarkPipeline$' -cpu 1 -benchmem
//
// The stream is built in memory as Docker 20.10 sends it for a json-file
// container (timestamps=1): an 8-byte frame header, a 30-byte UTC stamp and
// a space, then a loggen line of pipeLineLen bytes with its newline; one line
// in ten is on stderr, stamps are 1 us apart, as when a fast writer's lines
// are stamped by the daemon.

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

const (
	pipeLineLen  = 100    // bytes per line, newline included (loggen -size 100)
	pipeLines    = 65_536 // lines per stream in the "stream" benchmark (~9 MB)
	pipeReadSize = 32 << 10
)

var pipeContainer = Container{
	ID:    "4d6a2d1c0f2b9a8e7c6d5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e",
	Name:  "bench-loggen-1",
	Image: "dockerlogs-loggen:bench",
}

// pipeStream returns n frames of a multiplexed stream with timestamps.
func pipeStream(n int) []byte {
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	out := make([]byte, 0, n*(frameHeaderLen+fixedTimestampLen+1+pipeLineLen))
	line := make([]byte, 0, pipeLineLen)
	for i := range n {
		stream, name := Stdout, "stdout"
		if i%10 == 9 {
			stream, name = Stderr, "stderr"
		}
		line = append(line[:0], "seq="...)
		line = strconv.AppendInt(line, int64(i+1), 10)
		line = append(line, " stream="...)
		line = append(line, name...)
		line = append(line, ' ')
		for len(line) < pipeLineLen-1 {
			line = append(line, 'x')
		}
		line = append(line, '\n')
		stamp := base.Add(time.Duration(i) * time.Microsecond).Format("2006-01-02T15:04:05.000000000Z")
		size := len(stamp) + 1 + len(line)
		out = append(out, byte(stream), 0, 0, 0)
		out = binary.BigEndian.AppendUint32(out, uint32(size))
		out = append(out, stamp...)
		out = append(out, ' ')
		out = append(out, line...)
	}
	return out
}

// pipeReader hands out at most max bytes per Read, like a socket's body.
type pipeReader struct {
	r   bytes.Reader
	max int
}

func (p *pipeReader) Read(b []byte) (int, error) {
	if len(b) > p.max {
		b = b[:p.max]
	}
	return p.r.Read(b)
}

func (p *pipeReader) Close() error { return nil }

// pipeSource serves the same stream for every Logs call; one reader is
// reused so that opening a stream costs nothing of the benchmark's.
type pipeSource struct {
	data []byte
	rd   pipeReader
}

func (s *pipeSource) List(context.Context) ([]Container, error) {
	return []Container{pipeContainer}, nil
}
func (s *pipeSource) Inspect(context.Context, string) (Container, error) {
	return pipeContainer, nil
}

func (s *pipeSource) Logs(context.Context, string, LogsRequest) (io.ReadCloser, error) {
	s.rd.r.Reset(s.data)
	s.rd.max = pipeReadSize
	return &s.rd, nil
}

func (s *pipeSource) Events(ctx context.Context) (<-chan Event, <-chan error) {
	ev, errs := make(chan Event), make(chan error, 1)
	go func() { <-ctx.Done(); close(ev); errs <- nil }()
	return ev, errs
}
func (s *pipeSource) Close() error { return nil }

func pipeReaderFor(src Source, q *queue) *reader {
	log := logrus.New()
	log.SetOutput(io.Discard)
	opts := &Options{Stdout: true, Stderr: true, StreamRefresh: time.Hour, MaxLineSize: 1 << 20, QueueMaxSize: 1 << 62}
	cs := newContainerState(pipeContainer.ID, false)
	cs.setMeta(pipeContainer)
	return &reader{cs: cs, src: src, opts: opts, q: q, log: logrus.NewEntry(log), stats: new(Stats), tail: firstTail,
		joiner: lineJoiner{maxLine: opts.MaxLineSize}}
}

// pipeMeter counts what the timed loop costs: mallocs, and the process's
// CPU time, which a busy machine does not inflate the way it does wall time.
type pipeMeter struct {
	mallocs uint64
	cpu     time.Duration
}

func pipeMeasure() pipeMeter {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return pipeMeter{mallocs: m.Mallocs, cpu: cpu}
}

// reportPerLine adds lines/s and ns/line (wall), cpu-ns/line and
// lines/cpu-s (the process's CPU time: with -cpu 1, one core's throughput),
// and allocs/line.
func reportPerLine(b *testing.B, lines int, start pipeMeter) {
	end := pipeMeasure()
	if sec := b.Elapsed().Seconds(); sec > 0 {
		b.ReportMetric(float64(lines)/sec, "lines/s")
		b.ReportMetric(sec*1e9/float64(lines), "ns/line")
	}
	if cpu := end.cpu - start.cpu; cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(lines), "cpu-ns/line")
		b.ReportMetric(float64(lines)/cpu.Seconds(), "lines/cpu-s")
	}
	b.ReportMetric(float64(end.mallocs-start.mallocs)/float64(lines), "allocs/line")
}

// BenchmarkPipeline measures a line's way from the socket's bytes to an
// encoded record in a chunk.
//
//   - stream: reader.stream, the reader's own loop, on a whole stream of
//     pipeLines lines (one op = one stream), chunks handed to the queue and
//     taken back as a collect would.
//   - lines: the same steps one line per op, without the stream set-up:
//     decoder.next/fill, position.seen, reader.add (merge, trim, encode).
//   - decode: decoder.next/fill only.
func BenchmarkPipeline(b *testing.B) {
	data := pipeStream(pipeLines)

	b.Run("stream", func(b *testing.B) {
		src := &pipeSource{data: data}
		q := newQueue(1 << 62)
		r := pipeReaderFor(src, q)
		ctx := context.Background()
		r.chunk = q.buffer()
		drain := func() {
			for _, c := range q.take(1 << 62) {
				q.release(c.data)
			}
		}
		// One untimed stream fills the pools and sizes the buffers.
		r.cs.pos = position{}
		if o := r.stream(ctx, r.plan(stateDrain)); o.end != endLogEnd || o.read != pipeLines || o.err != nil {
			b.Fatalf("stream: end %d, %d lines, %v; want the log's end, %d lines", o.end, o.read, o.err, pipeLines)
		}
		drain()
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		before := pipeMeasure()
		b.ResetTimer()
		for range b.N {
			r.cs.pos = position{} // the same stamps again: not "seen"
			if o := r.stream(ctx, r.plan(stateDrain)); o.end != endLogEnd || o.err != nil {
				b.Fatalf("stream: end %d, %v", o.end, o.err)
			}
			drain()
		}
		b.StopTimer()
		reportPerLine(b, b.N*pipeLines, before)
	})

	b.Run("lines", func(b *testing.B) {
		src := &pipeSource{data: data}
		q := newQueue(1 << 62)
		r := pipeReaderFor(src, q)
		r.chunk = make([]byte, 0, chunkTarget+minReadBuf)
		c := newCyclingDecoder(data, maxFrameSize(r.opts.MaxLineSize))
		b.SetBytes(int64(len(data) / pipeLines))
		b.ReportAllocs()
		before := pipeMeasure()
		b.ResetTimer()
		for range b.N {
			// At the wrap, the same stamps again: positions reset.
			e := c.next(b, func() { r.cs.pos = position{} })
			if !r.cs.pos.seen(&e, 1) {
				r.joiner.add(&e, false, r)
			}
			if len(r.chunk) >= chunkTarget {
				r.chunk = r.chunk[:0] // flush, minus the queue
			}
		}
		b.StopTimer()
		reportPerLine(b, b.N, before)
	})

	b.Run("decode", func(b *testing.B) {
		c := newCyclingDecoder(data, maxFrameSize(1<<20))
		var sink int
		b.SetBytes(int64(len(data) / pipeLines))
		b.ReportAllocs()
		before := pipeMeasure()
		b.ResetTimer()
		for range b.N {
			e := c.next(b, func() {})
			sink += len(e.data)
		}
		b.StopTimer()
		reportPerLine(b, b.N, before)
		_ = sink
	})
}

// cyclingDecoder decodes a recorded stream over and over.
type cyclingDecoder struct {
	data []byte
	rd   *pipeReader
	d    *decoder
}

func newCyclingDecoder(data []byte, maxFrame int) *cyclingDecoder {
	rd := &pipeReader{max: pipeReadSize}
	rd.r.Reset(data)
	return &cyclingDecoder{data: data, rd: rd, d: newDecoder(rd, modeMultiplexed, maxFrame, nil)}
}

// next returns the next entry; at the end of the stream it starts over,
// calling wrapped first.
func (c *cyclingDecoder) next(b *testing.B, wrapped func()) entry {
	for {
		e, ok, err := c.d.next()
		if err != nil {
			b.Fatal(err)
		}
		if ok {
			return e
		}
		if err := c.d.fill(); err == io.EOF {
			c.rd.r.Reset(c.data)
			c.d = newDecoder(c.rd, modeMultiplexed, c.d.maxFrame, c.d.buffer())
			wrapped()
		} else if err != nil {
			b.Fatal(err)
		}
	}
}
