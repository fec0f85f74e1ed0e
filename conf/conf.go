// Package conf turns the plugin's configuration properties into a checked
// Config. Every problem is reported at once, each naming its key.
package conf

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
	"github.com/sirupsen/logrus"
)

// Keys, as documented. Fluent Bit looks properties up case-insensitively.
// None is a key Fluent Bit's core consumes (log_level, tag, host, port...).
const (
	KeyDockerHost     = "Docker_Host"
	KeyIncludeNames   = "Include_Names"
	KeyExcludeNames   = "Exclude_Names"
	KeyIncludeLabels  = "Include_Labels"
	KeyExcludeLabels  = "Exclude_Labels"
	KeyStdout         = "Stdout"
	KeyStderr         = "Stderr"
	KeyReadFromHead   = "Read_From_Head"
	KeyStreamRefresh  = "Stream_Refresh"
	KeyMaxLineSize    = "Max_Line_Size"
	KeyQueueMaxSize   = "Queue_Max_Size"
	KeyPluginLogLevel = "Plugin_Log_Level"
	KeyDB             = "DB"

	KeyLabels                 = "Labels"
	KeyLabelKeys              = "Label_Keys"
	KeyComposeFields          = "Compose_Fields"
	KeyMetricsListen          = "Metrics_Listen"
	KeyMetricsContainerLabels = "Metrics_Container_Labels"
	KeyDockerCertPath         = "Docker_Cert_Path"
	KeyDockerTLSVerify        = "Docker_TLS_Verify"
)

// Keys lists every key the plugin reads.
var Keys = []string{
	KeyDockerHost, KeyIncludeNames, KeyExcludeNames, KeyIncludeLabels, KeyExcludeLabels,
	KeyStdout, KeyStderr, KeyReadFromHead, KeyStreamRefresh, KeyMaxLineSize, KeyQueueMaxSize,
	KeyPluginLogLevel, KeyDB,
	KeyLabels, KeyLabelKeys, KeyComposeFields, KeyMetricsListen, KeyMetricsContainerLabels,
	KeyDockerCertPath, KeyDockerTLSVerify,
}

// The files a certificate directory holds, as the Docker CLI names them.
var certFiles = []string{"ca.pem", "cert.pem", "key.pem"}

// Defaults.
const (
	DefaultStreamRefresh = 30 * time.Second
	DefaultMaxLineSize   = 1 << 20
	DefaultQueueMaxSize  = 64 << 20
	DefaultLogLevel      = logrus.InfoLevel

	minStreamRefresh = 100 * time.Millisecond
	minMaxLineSize   = 1
	minQueueMaxSize  = 64 << 10
	maxSize          = 1 << 40
)

// ErrInvalid marks every configuration error.
var ErrInvalid = errors.New("invalid configuration")

// Config is the checked configuration.
type Config struct {
	// DockerHost is the daemon's address; empty means DOCKER_HOST from the
	// environment, else unix:///var/run/docker.sock.
	DockerHost    string
	IncludeNames  *regexp.Regexp
	ExcludeNames  *regexp.Regexp
	IncludeLabels []LabelMatch
	ExcludeLabels []LabelMatch
	Stdout        bool
	Stderr        bool
	ReadFromHead  bool
	StreamRefresh time.Duration
	MaxLineSize   int
	QueueMaxSize  int
	LogLevel      logrus.Level
	// DB is the positions file; empty keeps positions in memory only.
	DB string

	// Labels puts every container label in the record's "labels" map;
	// LabelKeys only those keys. ComposeFields adds compose_project and
	// compose_service.
	Labels        bool
	LabelKeys     []string
	ComposeFields bool
	// MetricsListen is the host:port of the /metrics endpoint; empty
	// serves none. MetricsContainerLabels adds series per container name.
	MetricsListen          string
	MetricsContainerLabels bool
	// DockerCertPath holds ca.pem, cert.pem and key.pem for a tcp://
	// daemon; empty means DOCKER_CERT_PATH. DockerTLSVerify checks the
	// daemon's certificate against ca.pem.
	DockerCertPath  string
	DockerTLSVerify bool
}

// LabelMatch is `key` (the label is set) or `key=value`.
type LabelMatch struct {
	Key, Value string
	AnyValue   bool
}

func (m LabelMatch) matches(labels map[string]string) bool {
	v, ok := labels[m.Key]
	return ok && (m.AnyValue || v == m.Value)
}

// Getter returns a property's value, "" when it is not set.
type Getter func(key string) string

// Parse reads every key through get. An empty value means the default; an
// unparsable one is an error naming the key. All errors are joined.
func Parse(get Getter) (Config, error) {
	c := Config{
		Stdout: true, Stderr: true,
		StreamRefresh: DefaultStreamRefresh,
		MaxLineSize:   DefaultMaxLineSize,
		QueueMaxSize:  DefaultQueueMaxSize,
		LogLevel:      DefaultLogLevel,
		// On by default: the safe choice for TLS, and compose_* are two
		// small fields that most users of Compose want.
		ComposeFields: true, DockerTLSVerify: true,
	}
	p := parser{get: get}
	c.DockerHost = p.host(KeyDockerHost)
	c.IncludeNames = p.regexp(KeyIncludeNames)
	c.ExcludeNames = p.regexp(KeyExcludeNames)
	c.IncludeLabels = p.labels(KeyIncludeLabels)
	c.ExcludeLabels = p.labels(KeyExcludeLabels)
	p.bool(KeyStdout, &c.Stdout)
	p.bool(KeyStderr, &c.Stderr)
	p.bool(KeyReadFromHead, &c.ReadFromHead)
	p.duration(KeyStreamRefresh, minStreamRefresh, &c.StreamRefresh)
	p.size(KeyMaxLineSize, minMaxLineSize, &c.MaxLineSize)
	p.size(KeyQueueMaxSize, minQueueMaxSize, &c.QueueMaxSize)
	p.level(KeyPluginLogLevel, &c.LogLevel)
	c.DB = p.value(KeyDB)
	p.bool(KeyLabels, &c.Labels)
	c.LabelKeys = p.list(KeyLabelKeys)
	p.bool(KeyComposeFields, &c.ComposeFields)
	c.MetricsListen = p.listen(KeyMetricsListen)
	p.bool(KeyMetricsContainerLabels, &c.MetricsContainerLabels)
	c.DockerCertPath = p.certDir(KeyDockerCertPath)
	p.bool(KeyDockerTLSVerify, &c.DockerTLSVerify)
	if c.Labels && len(c.LabelKeys) > 0 {
		p.fail(KeyLabelKeys, "is set and %s is on: choose one (on takes every label)", strings.ToLower(KeyLabels))
	}
	if c.MetricsContainerLabels && c.MetricsListen == "" {
		p.fail(KeyMetricsContainerLabels, "is on but %s is not set: there would be no metrics", strings.ToLower(KeyMetricsListen))
	}
	if c.DockerCertPath != "" && strings.HasPrefix(c.DockerHost, "unix://") {
		p.fail(KeyDockerCertPath, "is set but %s is a unix socket: TLS applies to tcp:// hosts only", strings.ToLower(KeyDockerHost))
	}
	if !c.Stdout && !c.Stderr {
		p.fail(KeyStdout, "and %s are both off: nothing would be read", strings.ToLower(KeyStderr))
	}
	if len(p.errs) > 0 {
		return Config{}, errors.Join(p.errs...)
	}
	return c, nil
}

// Options converts to the capture package's options.
func (c Config) Options() capture.Options {
	return capture.Options{
		Stdout: c.Stdout, Stderr: c.Stderr,
		ReadFromHead:  c.ReadFromHead,
		StreamRefresh: c.StreamRefresh,
		MaxLineSize:   c.MaxLineSize,
		QueueMaxSize:  c.QueueMaxSize,
		Include:       c.Include,
		Metadata: capture.Metadata{
			Labels:        c.Labels,
			LabelKeys:     c.LabelKeys,
			ComposeFields: c.ComposeFields,
		},
		ContainerStats: c.MetricsContainerLabels,
	}
}

// Include applies the name and label filters.
func (c Config) Include(ct capture.Container) bool {
	if c.IncludeNames != nil && !c.IncludeNames.MatchString(ct.Name) {
		return false
	}
	if c.ExcludeNames != nil && c.ExcludeNames.MatchString(ct.Name) {
		return false
	}
	for _, m := range c.IncludeLabels {
		if !m.matches(ct.Labels) {
			return false
		}
	}
	for _, m := range c.ExcludeLabels {
		if m.matches(ct.Labels) {
			return false
		}
	}
	return true
}

type parser struct {
	get  Getter
	errs []error
}

func (p *parser) value(key string) string { return strings.TrimSpace(p.get(key)) }

func (p *parser) fail(key, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%w: %s %s", ErrInvalid, strings.ToLower(key), fmt.Sprintf(format, args...)))
}

func (p *parser) host(key string) string {
	v := p.value(key)
	if v == "" {
		return ""
	}
	switch {
	case strings.HasPrefix(v, "unix://") && len(v) > len("unix://"):
	case strings.HasPrefix(v, "tcp://") && len(v) > len("tcp://"):
	default:
		p.fail(key, "%q: want unix:///path/to/docker.sock or tcp://host:port", v)
	}
	return v
}

func (p *parser) regexp(key string) *regexp.Regexp {
	v := p.value(key)
	if v == "" {
		return nil
	}
	re, err := regexp.Compile(v)
	if err != nil {
		p.fail(key, "%q is not a regular expression: %v", v, err)
	}
	return re
}

func (p *parser) labels(key string) []LabelMatch {
	v := p.value(key)
	if v == "" {
		return nil
	}
	var out []LabelMatch
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		k, val, hasValue := strings.Cut(item, "=")
		k = strings.TrimSpace(k)
		if k == "" {
			p.fail(key, "%q: every entry must be key or key=value", v)
			return nil
		}
		out = append(out, LabelMatch{Key: k, Value: strings.TrimSpace(val), AnyValue: !hasValue})
	}
	return out
}

// list takes comma-separated items, none of them empty.
func (p *parser) list(key string) []string {
	v := p.value(key)
	if v == "" {
		return nil
	}
	var out []string
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			p.fail(key, "%q: an empty entry between commas", v)
			return nil
		}
		out = append(out, item)
	}
	return out
}

// listen takes host:port with a numeric port; the host may be empty (every
// interface). The address is bound at init, which reports a port in use.
func (p *parser) listen(key string) string {
	v := p.value(key)
	if v == "" {
		return ""
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		p.fail(key, "%q: want host:port, e.g. 127.0.0.1:2021", v)
		return ""
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		p.fail(key, "%q: port %q is not a number from 1 to 65535", v, port)
		return ""
	}
	return v
}

// certDir takes a directory holding ca.pem, cert.pem and key.pem.
func (p *parser) certDir(key string) string {
	v := p.value(key)
	if v == "" {
		return ""
	}
	var missing []string
	for _, f := range certFiles {
		if _, err := os.Stat(filepath.Join(v, f)); err != nil {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		p.fail(key, "%q: cannot read %s there", v, strings.Join(missing, ", "))
		return ""
	}
	return v
}

func (p *parser) bool(key string, dst *bool) {
	switch v := strings.ToLower(p.value(key)); v {
	case "":
	case "on", "true", "yes", "1":
		*dst = true
	case "off", "false", "no", "0":
		*dst = false
	default:
		p.fail(key, "%q: want on or off", v)
	}
}

// duration takes Go durations ("30s", "1m30s") and, like Fluent Bit, a bare
// number of seconds.
func (p *parser) duration(key string, least time.Duration, dst *time.Duration) {
	v := p.value(key)
	if v == "" {
		return
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		secs, err2 := strconv.ParseFloat(v, 64)
		if err2 != nil {
			p.fail(key, "%q is not a duration (e.g. 30s)", v)
			return
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d < least {
		p.fail(key, "%q is below the minimum %s", v, least)
		return
	}
	*dst = d
}

// size takes bytes with an optional K, M or G suffix (powers of 1024, an
// optional B or iB after it), as Fluent Bit's sizes do.
func (p *parser) size(key string, least int, dst *int) {
	v := p.value(key)
	if v == "" {
		return
	}
	num := strings.ToUpper(v)
	num = strings.TrimSuffix(strings.TrimSuffix(num, "IB"), "B")
	mult := 1
	switch {
	case strings.HasSuffix(num, "K"):
		mult = 1 << 10
	case strings.HasSuffix(num, "M"):
		mult = 1 << 20
	case strings.HasSuffix(num, "G"):
		mult = 1 << 30
	}
	if mult != 1 {
		num = num[:len(num)-1]
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 {
		p.fail(key, "%q is not a size (e.g. 1M)", v)
		return
	}
	if n > maxSize/int64(mult) { // before multiplying, which could wrap
		p.fail(key, "%q is out of range (at most 1T)", v)
		return
	}
	total := n * int64(mult)
	if total < int64(least) {
		p.fail(key, "%q is out of range (at least %d bytes)", v, least)
		return
	}
	*dst = int(total)
}

func (p *parser) level(key string, dst *logrus.Level) {
	v := strings.ToLower(p.value(key))
	if v == "" {
		return
	}
	switch v {
	case "error", "warn", "warning", "info", "debug", "trace":
		*dst, _ = logrus.ParseLevel(v)
	default:
		p.fail(key, "%q: want error, warn, info, debug or trace", v)
	}
}
