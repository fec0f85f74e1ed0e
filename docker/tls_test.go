package docker

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// certAuthority is a CA made for one test, which signs server and client
// certificates.
type certAuthority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func certTemplate(t *testing.T, cn string) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
}

func newCA(t *testing.T, name string) *certAuthority {
	t.Helper()
	key := newKey(t)
	tmpl := certTemplate(t, name)
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &certAuthority{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a certificate and key in PEM, for the server (valid for
// 127.0.0.1) or a client.
func (ca *certAuthority) issue(t *testing.T, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key := newKey(t)
	tmpl := certTemplate(t, "client")
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if server {
		tmpl.Subject.CommonName = "127.0.0.1"
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func writeFiles(t *testing.T, dir string, files map[string][]byte) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// tlsSetup is a daemon's certificates and the client directories the
// tests use, each laid out as the Docker CLI expects (ca.pem, cert.pem,
// key.pem).
type tlsSetup struct {
	serverCA, serverCert, serverKey string // files for the daemon
	good                            string // the daemon's CA and a client cert it signed
	wrongCA                         string // another CA as ca.pem, with the good client cert
	strangerID                      string // the daemon's CA, with a client cert from another CA
}

func newTLSSetup(t *testing.T) tlsSetup {
	t.Helper()
	dir := t.TempDir()
	ca, other := newCA(t, "daemon CA"), newCA(t, "other CA")
	srvCert, srvKey := ca.issue(t, true)
	cliCert, cliKey := ca.issue(t, false)
	strCert, strKey := other.issue(t, false)
	d := writeFiles(t, filepath.Join(dir, "daemon"), map[string][]byte{"ca.pem": ca.pem, "server-cert.pem": srvCert, "server-key.pem": srvKey})
	return tlsSetup{
		serverCA: filepath.Join(d, "ca.pem"), serverCert: filepath.Join(d, "server-cert.pem"), serverKey: filepath.Join(d, "server-key.pem"),
		good:       writeFiles(t, filepath.Join(dir, "good"), map[string][]byte{"ca.pem": ca.pem, "cert.pem": cliCert, "key.pem": cliKey}),
		wrongCA:    writeFiles(t, filepath.Join(dir, "wrong-ca"), map[string][]byte{"ca.pem": other.pem, "cert.pem": cliCert, "key.pem": cliKey}),
		strangerID: writeFiles(t, filepath.Join(dir, "stranger"), map[string][]byte{"ca.pem": ca.pem, "cert.pem": strCert, "key.pem": strKey}),
	}
}

// clearTLSEnv makes a test independent of the Docker CLI variables of
// whoever runs it.
func clearTLSEnv(t *testing.T) {
	t.Setenv("DOCKER_CERT_PATH", "")
	t.Setenv("DOCKER_TLS_VERIFY", "")
}

// checkTLSDaemon runs the checks every TLS daemon must pass: host is
// tcp://127.0.0.1:port of a daemon that requires client certificates
// signed by the setup's CA.
func checkTLSDaemon(t *testing.T, host string, s tlsSetup) {
	list := func(t *testing.T, opts ...Option) error {
		t.Helper()
		c, err := New(host, nil, opts...)
		if err != nil {
			t.Fatalf("New(%q): %v", host, err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err = c.List(ctx)
		return err
	}
	t.Run("the CA and a client certificate it signed list containers", func(t *testing.T) {
		clearTLSEnv(t)
		if err := list(t, WithTLS(TLS{CertPath: s.good})); err != nil {
			t.Errorf("List: %v", err)
		}
	})
	t.Run("DOCKER_CERT_PATH is used when no path is given", func(t *testing.T) {
		clearTLSEnv(t)
		t.Setenv("DOCKER_CERT_PATH", s.good)
		if err := list(t); err != nil {
			t.Errorf("List: %v", err)
		}
	})
	t.Run("a client certificate from another CA is refused", func(t *testing.T) {
		clearTLSEnv(t)
		if err := list(t, WithTLS(TLS{CertPath: s.strangerID})); err == nil {
			t.Error("List succeeded with a client certificate the daemon's CA did not sign")
		}
	})
	t.Run("no client certificate is refused", func(t *testing.T) {
		pool := x509.NewCertPool()
		b, err := os.ReadFile(s.serverCA)
		if err != nil || !pool.AppendCertsFromPEM(b) {
			t.Fatalf("read %s: %v", s.serverCA, err)
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get("https://" + strings.TrimPrefix(host, "tcp://") + "/_ping")
		if err == nil {
			resp.Body.Close()
			t.Errorf("GET /_ping without a client certificate: %s, want a refused handshake", resp.Status)
		}
	})
	t.Run("a wrong CA fails verification", func(t *testing.T) {
		clearTLSEnv(t)
		err := list(t, WithTLS(TLS{CertPath: s.wrongCA}))
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Errorf("List = %v, want an x509.UnknownAuthorityError", err)
		}
	})
	t.Run("DOCKER_CERT_PATH without DOCKER_TLS_VERIFY still verifies", func(t *testing.T) {
		clearTLSEnv(t)
		t.Setenv("DOCKER_CERT_PATH", s.wrongCA)
		var unknown x509.UnknownAuthorityError
		if err := list(t); !errors.As(err, &unknown) {
			t.Errorf("List = %v, want an x509.UnknownAuthorityError", err)
		}
	})
	t.Run("SkipVerify accepts a server the CA did not sign", func(t *testing.T) {
		clearTLSEnv(t)
		if err := list(t, WithTLS(TLS{CertPath: s.wrongCA, SkipVerify: true})); err != nil {
			t.Errorf("List: %v", err)
		}
	})
}

// A TLS server standing in for the daemon: quick, and it runs wherever the
// tests do.
func TestTLSAgainstAFakeDaemon(t *testing.T) {
	s := newTLSSetup(t)
	pool := x509.NewCertPool()
	b, err := os.ReadFile(s.serverCA)
	if err != nil || !pool.AppendCertsFromPEM(b) {
		t.Fatalf("read %s: %v", s.serverCA, err)
	}
	cert, err := tls.LoadX509KeyPair(s.serverCert, s.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/_ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		w.Write([]byte("OK")) //nolint:errcheck // the client sees a short answer
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/containers/json") {
			writeJSON(w, 200, []any{})
			return
		}
		if strings.HasSuffix(r.URL.Path, "/version") {
			serveVersion(w, r)
			return
		}
		http.NotFound(w, r)
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	checkTLSDaemon(t, "tcp://"+srv.Listener.Addr().String(), s)
}

func TestTLSCertificatesForAUnixSocketAreRefused(t *testing.T) {
	clearTLSEnv(t)
	s := newTLSSetup(t)
	_, err := New("unix:///var/run/docker.sock", nil, WithTLS(TLS{CertPath: s.good}))
	if err == nil || !strings.Contains(err.Error(), "tcp://") {
		t.Errorf("New = %v, want an error saying TLS is for tcp:// hosts", err)
	}
	// From the environment they are ignored, as the Docker CLI does.
	t.Setenv("DOCKER_CERT_PATH", s.good)
	if _, err := New("unix:///var/run/docker.sock", nil); err != nil {
		t.Errorf("New with DOCKER_CERT_PATH and a unix socket: %v", err)
	}
}

func TestTLSMissingCertificateFilesFailNew(t *testing.T) {
	clearTLSEnv(t)
	dir := t.TempDir()
	_, err := New("tcp://127.0.0.1:2376", nil, WithTLS(TLS{CertPath: dir}))
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("New = %v, want an error naming %s", err, dir)
	}
}

// A second dockerd with --tlsverify on a loopback port, beside the
// machine's own: its own data-root, exec-root, pidfile and socket, no
// bridge and no iptables, and an empty config file so that the machine's
// daemon.json (whose data-root would clash) is not read.
func TestTLSAgainstASecondDockerd(t *testing.T) {
	dockerd, err := exec.LookPath("dockerd")
	switch {
	case err != nil && os.Getenv("CI") == "true":
		t.Fatalf("CI=true but no dockerd: %v", err)
	case err != nil:
		t.Skipf("no dockerd: %v", err)
	case os.Geteuid() != 0:
		t.Skip("a second dockerd needs root")
	}
	s := newTLSSetup(t)
	// Short: containerd's socket goes under exec-root, and a unix socket
	// path is at most 107 bytes.
	root, err := os.MkdirTemp("", "dl-tls-")
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	host := "tcp://127.0.0.1:" + strconv.Itoa(port)
	cfg := writeFiles(t, filepath.Join(root, "etc"), map[string][]byte{"daemon.json": []byte("{}\n")})
	cmd := exec.Command(dockerd,
		"--config-file", filepath.Join(cfg, "daemon.json"),
		"--data-root", filepath.Join(root, "data"),
		"--exec-root", filepath.Join(root, "exec"),
		"--pidfile", filepath.Join(root, "docker.pid"),
		"-H", "unix://"+filepath.Join(root, "docker.sock"),
		"-H", host,
		"--tlsverify", "--tlscacert", s.serverCA, "--tlscert", s.serverCert, "--tlskey", s.serverKey,
		"--bridge", "none", "--iptables=false", "--ip-masq=false",
		// vfs needs no kernel support: only listing is tested.
		"--storage-driver", "vfs",
	)
	// Its own process group, so that a kill reaches its containerd too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = nil
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	// exited is closed once dockerd is reaped; lines carries its log
	// lines until then. The goroutine below owns both.
	exited := make(chan struct{})
	lines := make(chan string, 1024)
	var dlog strings.Builder
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // nobody waits any more; the log is kept below
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Errorf("dockerd did not stop within 30 s of SIGTERM: killing its process group")
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if err := os.RemoveAll(root); err != nil {
			t.Logf("remove %s: %v", root, err)
		}
	})

	// Ready when it says it listens on the TCP address.
	want := "API listen on 127.0.0.1:" + strconv.Itoa(port)
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for ready := false; !ready; {
		select {
		case l := <-lines:
			dlog.WriteString(l + "\n")
			ready = strings.Contains(l, want)
		case <-exited:
			t.Fatalf("dockerd exited before listening:\n%s", dlog.String())
		case <-deadline.C:
			t.Fatalf("dockerd did not listen on %s within 60 s:\n%s", host, dlog.String())
		}
	}
	checkTLSDaemon(t, host, s)
	if t.Failed() {
		t.Logf("dockerd log so far:\n%s", dlog.String())
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
