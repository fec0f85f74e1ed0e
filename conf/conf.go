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
	"github.com/dockerlogs/fluent-bit-docker-logs/capture/jsonfile"
	"github.com/sirupsen/logrus"
)

// Key is one configuration key, as a Fluent Bit plugin declares an entry of
// its config_map. The README's table of keys is checked against Keys.
type Key struct {
	// Name as documented; Fluent Bit looks properties up case-insensitively.
	Name string
	// Default is what an unset or empty property means, parsed as if it
	// were set; "" leaves the field's zero value.
	Default string
	// Help is how the key's meaning starts in the README.
	Help string
	// set parses a value that is not empty into the key's field; its error
	// says what is wrong, and Parse names the key.
	set func(c *Config, v string) error
}

// Keys the plugin reads, in the README's order. None is a key Fluent Bit's
// core consumes (log_level, tag, host, port...). Adding a key is a row here,
// a field in Config and a row in the README.
var Keys = []Key{
	{KeyDockerHost, "", "The daemon: `unix:///path` or `tcp://host:port`.",
		func(c *Config, v string) (err error) { c.DockerHost, err = parseHost(v); return err }},
	{"Docker_Cert_Path", "", "Directory with `ca.pem` (the daemon's CA), `cert.pem` and `key.pem`",
		func(c *Config, v string) (err error) { c.DockerCertPath, err = parseCertDir(v); return err }},
	{"Docker_TLS_Verify", "on", "Check the daemon's certificate against `ca.pem`.",
		func(c *Config, v string) (err error) { c.DockerTLSVerify, err = parseBool(v); return err }},
	{"Include_Names", "", "Regular expression (Go syntax, unanchored) over the container name",
		func(c *Config, v string) (err error) { c.IncludeNames, err = parseRegexp(v); return err }},
	{"Exclude_Names", "", "Regular expression; a matching container is not read.",
		func(c *Config, v string) (err error) { c.ExcludeNames, err = parseRegexp(v); return err }},
	{"Include_Labels", "", "Comma-separated `key` or `key=value`; a container must match every entry.",
		func(c *Config, v string) (err error) { c.IncludeLabels, err = parseLabels(v); return err }},
	{"Exclude_Labels", "", "Comma-separated `key` or `key=value`; a container matching any entry is not read.",
		func(c *Config, v string) (err error) { c.ExcludeLabels, err = parseLabels(v); return err }},
	{"Stdout", "on", "Read stdout.",
		func(c *Config, v string) (err error) { c.Stdout, err = parseBool(v); return err }},
	{"Stderr", "on", "Read stderr",
		func(c *Config, v string) (err error) { c.Stderr, err = parseBool(v); return err }},
	{"Read_From_Head", "off", "`off`: a container already running when the plugin starts is read from that moment on",
		func(c *Config, v string) (err error) { c.ReadFromHead, err = parseBool(v); return err }},
	{"Stream_Refresh", "30s", "Each stream is closed and reopened at this age",
		func(c *Config, v string) (err error) {
			c.StreamRefresh, err = parseDuration(v, minStreamRefresh)
			return err
		}},
	{"Max_Line_Size", "1M", "Bound for one line (after its 16 KiB pieces are joined).",
		func(c *Config, v string) (err error) {
			c.MaxLineSize, err = parseSize(v, minMaxLineSize, maxMaxLineSize)
			return err
		}},
	{"Queue_Max_Size", "64M", "Bound for the encoded records waiting between the readers and Fluent Bit",
		func(c *Config, v string) (err error) {
			c.QueueMaxSize, err = parseSize(v, minQueueMaxSize, maxQueueMaxSize)
			return err
		}},
	{KeyDB, "", "File where positions are kept across restarts",
		func(c *Config, v string) error { c.DB = v; return nil }},
	// 5s: with the default memory storage an appended batch dies in a
	// crash until an output has sent it, which takes a Flush (1 s by
	// default) and the output's round trip; a crash repeats about that much.
	{"DB_Margin", "5s", "How far the positions written to `DB` trail those Fluent Bit has taken",
		func(c *Config, v string) (err error) { c.DBMargin, err = parseDuration(v, 0); return err }},
	{"Plugin_Log_Level", "info", "`error`, `warn`, `info`, `debug` or `trace`.",
		func(c *Config, v string) (err error) { c.LogLevel, err = parseLevel(v); return err }},
	{"Labels", "off", "`on`: every label of the container in the record",
		func(c *Config, v string) (err error) { c.Labels, err = parseBool(v); return err }},
	{"Label_Keys", "", "Comma-separated label keys: only these labels",
		func(c *Config, v string) (err error) { c.LabelKeys, err = parseList(v); return err }},
	{"Compose_Fields", "on", "Add `compose_project` and `compose_service` from Compose's labels",
		func(c *Config, v string) (err error) { c.ComposeFields, err = parseBool(v); return err }},
	{KeyMetricsListen, "", "`host:port` (e.g. `127.0.0.1:2021`; `:2021` for every interface) where the plugin serves Prometheus metrics",
		func(c *Config, v string) (err error) { c.MetricsListen, err = parseListen(v); return err }},
	{"Metrics_Container_Labels", "off", "`on`: also lines and bytes per container",
		func(c *Config, v string) (err error) { c.MetricsContainerLabels, err = parseBool(v); return err }},
	{"Logs_From", "auto", "Where the lines come from.",
		func(c *Config, v string) (err error) { c.LogsFrom, err = parseLogsFrom(v); return err }},
	{"Containers_Path", jsonfile.DefaultContainersPath, "Where the daemon's containers directories",
		func(c *Config, v string) (err error) { c.ContainersPath, err = parseAbsDir(v); return err }},
}

// Keys named outside their row.
const (
	KeyDockerHost    = "Docker_Host"
	KeyDB            = "DB"
	KeyMetricsListen = "Metrics_Listen"
)

// Bounds of the values; the README states them with each key.
const (
	minStreamRefresh = 100 * time.Millisecond
	minMaxLineSize   = 1
	minQueueMaxSize  = 64 << 10
	// maxMaxLineSize: a line is held whole while its 16 KiB pieces are
	// joined, for each stream of each running container, and becomes one
	// record; 16 MiB (1,024 pieces) is far beyond what outputs take in one
	// record (Kafka 1 MB, Loki about 5 MB by default).
	maxMaxLineSize = 16 << 20
	// maxQueueMaxSize: one collect hands Fluent Bit up to this much as one
	// buffer, so the process holds it twice; 1 GiB is about 25 s of the
	// daemon's peak output here. Holding more is the job of Fluent Bit's
	// own buffering (mem_buf_limit, storage.type filesystem).
	maxQueueMaxSize = 1 << 30
)

// The files a certificate directory holds, as the Docker CLI names them.
var certFiles = []string{"ca.pem", "cert.pem", "key.pem"}

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
	// DBMargin is how far the positions written to DB trail the committed
	// ones, with either storage type (see the README's Known limits).
	DBMargin time.Duration

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
	// LogsFrom chooses where containers' logs are read: their json-file
	// files where readable (auto), only files, or only the API.
	LogsFrom jsonfile.Mode
	// ContainersPath is where the daemon's containers directories are
	// seen from the plugin (Docker Root Dir + /containers on the host).
	ContainersPath string
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
	var c Config
	var errs []error
	fail := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s %s", ErrInvalid, strings.ToLower(key), fmt.Sprintf(format, args...)))
	}
	for _, k := range Keys {
		v := strings.TrimSpace(get(k.Name))
		if v == "" {
			v = k.Default
		}
		if v == "" {
			continue
		}
		if err := k.set(&c, v); err != nil {
			fail(k.Name, "%v", err)
		}
	}
	if c.Labels && len(c.LabelKeys) > 0 {
		fail("label_keys", "is set and labels is on: choose one (on takes every label)")
	}
	if c.MetricsContainerLabels && c.MetricsListen == "" {
		fail("metrics_container_labels", "is on but metrics_listen is not set: there would be no metrics")
	}
	if c.DockerCertPath != "" && strings.HasPrefix(c.DockerHost, "unix://") {
		fail("docker_cert_path", "is set but docker_host is a unix socket: TLS applies to tcp:// hosts only")
	}
	if !c.Stdout && !c.Stderr {
		fail("stdout", "and stderr are both off: nothing would be read")
	}
	if c.LogsFrom == jsonfile.Files {
		// No container could be read otherwise.
		if _, err := os.ReadDir(c.ContainersPath); err != nil {
			fail("containers_path", "%q cannot be read and logs_from is files: mount the daemon's containers directory there (read-only is enough): %v",
				c.ContainersPath, err)
		}
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
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

func parseLogsFrom(v string) (jsonfile.Mode, error) {
	switch strings.ToLower(v) {
	case "auto":
		return jsonfile.Auto, nil
	case "files":
		return jsonfile.Files, nil
	case "api":
		return jsonfile.API, nil
	}
	return jsonfile.Auto, fmt.Errorf("%q: want auto, files or api", v)
}

// parseAbsDir takes an absolute path.
func parseAbsDir(v string) (string, error) {
	if !filepath.IsAbs(v) {
		return "", fmt.Errorf("%q: want an absolute path, e.g. %s", v, jsonfile.DefaultContainersPath)
	}
	return filepath.Clean(v), nil
}

func parseHost(v string) (string, error) {
	switch {
	case strings.HasPrefix(v, "unix://") && len(v) > len("unix://"):
	case strings.HasPrefix(v, "tcp://") && len(v) > len("tcp://"):
	default:
		return v, fmt.Errorf("%q: want unix:///path/to/docker.sock or tcp://host:port", v)
	}
	return v, nil
}

func parseRegexp(v string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(v)
	if err != nil {
		return nil, fmt.Errorf("%q is not a regular expression: %v", v, err)
	}
	return re, nil
}

func parseLabels(v string) ([]LabelMatch, error) {
	var out []LabelMatch
	for _, item := range strings.Split(v, ",") {
		k, val, hasValue := strings.Cut(strings.TrimSpace(item), "=")
		k = strings.TrimSpace(k)
		if k == "" {
			return nil, fmt.Errorf("%q: every entry must be key or key=value", v)
		}
		out = append(out, LabelMatch{Key: k, Value: strings.TrimSpace(val), AnyValue: !hasValue})
	}
	return out, nil
}

// parseList takes comma-separated items, none of them empty.
func parseList(v string) ([]string, error) {
	var out []string
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("%q: an empty entry between commas", v)
		}
		out = append(out, item)
	}
	return out, nil
}

// parseListen takes host:port with a numeric port; the host may be empty
// (every interface). The address is bound at init, which reports a port in
// use.
func parseListen(v string) (string, error) {
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return "", fmt.Errorf("%q: want host:port, e.g. 127.0.0.1:2021", v)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", fmt.Errorf("%q: port %q is not a number from 1 to 65535", v, port)
	}
	return v, nil
}

// parseCertDir takes a directory holding ca.pem, cert.pem and key.pem.
func parseCertDir(v string) (string, error) {
	var missing []string
	for _, f := range certFiles {
		if _, err := os.Stat(filepath.Join(v, f)); err != nil {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("%q: cannot read %s there", v, strings.Join(missing, ", "))
	}
	return v, nil
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "on", "true", "yes", "1":
		return true, nil
	case "off", "false", "no", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q: want on or off", strings.ToLower(v))
}

// parseDuration takes Go durations ("30s", "1m30s") and, like Fluent Bit, a
// bare number of seconds.
func parseDuration(v string, least time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		secs, err2 := strconv.ParseFloat(v, 64)
		if err2 != nil {
			return 0, fmt.Errorf("%q is not a duration (e.g. 30s)", v)
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d < least {
		return 0, fmt.Errorf("%q is below the minimum %s", v, least)
	}
	return d, nil
}

// sizeUnits are the suffixes of sizes, largest first, as Fluent Bit's sizes
// take them (powers of 1024).
var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}}

// parseSize takes bytes with an optional K, M or G suffix (an optional B or
// iB after it), from least to most bytes.
func parseSize(v string, least, most int64) (int, error) {
	num := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(v), "IB"), "B")
	mult := int64(1)
	for _, u := range sizeUnits[1:] { // no T: sizes that large are out of range
		if strings.HasSuffix(num, u.suffix) {
			mult, num = u.mult, strings.TrimSuffix(num, u.suffix)
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size (e.g. 1M)", v)
	}
	if n > most/mult { // before multiplying, which could wrap
		return 0, fmt.Errorf("%q is out of range (at most %s)", v, formatSize(most))
	}
	if n*mult < least {
		return 0, fmt.Errorf("%q is out of range (at least %d bytes)", v, least)
	}
	return int(n * mult), nil
}

// formatSize writes n in the largest unit that divides it.
func formatSize(n int64) string {
	for _, u := range sizeUnits {
		if n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

func parseLevel(v string) (logrus.Level, error) {
	switch v = strings.ToLower(v); v {
	case "error", "warn", "warning", "info", "debug", "trace":
		return logrus.ParseLevel(v)
	}
	return 0, fmt.Errorf("%q: want error, warn, info, debug or trace", v)
}
