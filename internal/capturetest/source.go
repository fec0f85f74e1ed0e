package capturetest

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
)

// CountingSource is a source (the real client) that records the logs
// streams it opens per container and counts those still open. With tap, it
// also records the entries each stream carried (multiplexed streams only).
type CountingSource struct {
	capture.Source
	tap bool

	mu     sync.Mutex
	opened map[string][]*OpenedStream
	// openNow and openMax count a container's streams open at once; open
	// counts them all.
	openNow, openMax map[string]int
	open             int
}

// NewCountingSource counts the logs streams of src.
func NewCountingSource(src capture.Source, tap bool) *CountingSource {
	return &CountingSource{Source: src, tap: tap, opened: map[string][]*OpenedStream{},
		openNow: map[string]int{}, openMax: map[string]int{}}
}

// OpenedStream is one logs request and, when tapped, the entries it
// carried: "<stream byte> <docker stamp>", which names a line.
type OpenedStream struct {
	Req     capture.LogsRequest
	mu      sync.Mutex
	entries []string
}

// Carried returns the entries the stream carried (with tap).
func (o *OpenedStream) Carried() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.entries...)
}

func (s *CountingSource) Logs(ctx context.Context, id string, req capture.LogsRequest) (io.ReadCloser, error) {
	rc, err := s.Source.Logs(ctx, id, req)
	if err != nil {
		return nil, err
	}
	o := &OpenedStream{Req: req}
	s.mu.Lock()
	s.opened[id] = append(s.opened[id], o)
	s.openNow[id]++
	s.openMax[id] = max(s.openMax[id], s.openNow[id])
	s.open++
	s.mu.Unlock()
	return &countedStream{ReadCloser: rc, s: s, id: id, o: o, tap: s.tap}, nil
}

// Streams returns the logs streams opened for container id, in order.
func (s *CountingSource) Streams(id string) []*OpenedStream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*OpenedStream(nil), s.opened[id]...)
}

// Requests returns the logs requests made for container id, in order.
func (s *CountingSource) Requests(id string) []capture.LogsRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []capture.LogsRequest
	for _, o := range s.opened[id] {
		out = append(out, o.Req)
	}
	return out
}

// OpenNow is how many streams of container id are open.
func (s *CountingSource) OpenNow(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.openNow[id]
}

// MaxOpen is the most streams of container id that were open at once.
func (s *CountingSource) MaxOpen(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.openMax[id]
}

// OpenAll is how many streams are open, of every container.
func (s *CountingSource) OpenAll() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

type countedStream struct {
	io.ReadCloser
	s    *CountingSource
	id   string
	o    *OpenedStream
	once sync.Once
	tap  bool
	buf  []byte // bytes read and not yet parsed into whole frames
}

func (c *countedStream) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if c.tap && n > 0 {
		c.buf = append(c.buf, p[:n]...)
		for len(c.buf) >= 8 {
			size := int(binary.BigEndian.Uint32(c.buf[4:8]))
			if len(c.buf) < 8+size {
				break
			}
			if payload := c.buf[8 : 8+size]; (c.buf[0] == 1 || c.buf[0] == 2) && size > 30 {
				c.o.mu.Lock()
				c.o.entries = append(c.o.entries, fmt.Sprintf("%d %s", c.buf[0], payload[:30]))
				c.o.mu.Unlock()
			}
			c.buf = c.buf[8+size:]
		}
	}
	return n, err
}

func (c *countedStream) Close() error {
	err := c.ReadCloser.Close()
	c.once.Do(func() {
		c.s.mu.Lock()
		c.s.open--
		c.s.openNow[c.id]--
		c.s.mu.Unlock()
	})
	return err
}
