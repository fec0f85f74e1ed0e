package metrics

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
)

// startMetrics serves an idle capture's metrics on a loopback port with
// limits; the server stops at cleanup.
func startMetrics(t *testing.T, limits serverLimits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	stats := func() capture.StatsSnapshot { return capture.StatsSnapshot{} }
	m, err := serve(ln, stats, false, logrus.NewEntry(l), limits)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return ln.Addr().String()
}

// keepAlive opens a connection and scrapes once over it, leaving it open
// and idle as a keep-alive client does.
func keepAlive(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	br := bufio.NewReader(conn)
	scrapeOver(t, conn, br)
	return conn, br
}

func scrapeOver(t *testing.T, conn net.Conn, br *bufio.Reader) {
	t.Helper()
	if _, err := io.WriteString(conn, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s, %v", resp.Status, err)
	}
}

func TestMetricsServerClosesIdleKeepAliveConnections(t *testing.T) {
	limits := limits
	limits.idle = 100 * time.Millisecond
	addr := startMetrics(t, limits)
	conn, br := keepAlive(t, addr)
	// The server closes the idle connection: the read ends with EOF. The
	// deadline only bounds a failing test.
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle keep-alive connection: read gave %v, want EOF (closed by the server)", err)
	}
}

func TestMetricsServerBoundsConcurrentConnections(t *testing.T) {
	limits := limits
	limits.conns = 2
	addr := startMetrics(t, limits)
	first, _ := keepAlive(t, addr)
	keepAlive(t, addr)
	// A third connection is not served while two are open...
	third, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	br := bufio.NewReader(third)
	if _, err := io.WriteString(third, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := br.Peek(1); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a third connection beyond a bound of 2 was answered (%v)", err)
	}
	// ...and is served once one of them closes.
	first.Close()
	third.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("third connection after one closed: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("third connection: %s", resp.Status)
	}
}
