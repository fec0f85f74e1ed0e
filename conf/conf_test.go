package conf_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dockerlogs/fluent-bit-docker-logs/capture"
	"github.com/dockerlogs/fluent-bit-docker-logs/capture/jsonfile"
	"github.com/dockerlogs/fluent-bit-docker-logs/conf"
	"github.com/sirupsen/logrus"
)

// props looks keys up case-insensitively, as Fluent Bit does.
func props(m map[string]string) conf.Getter {
	lower := map[string]string{}
	for k, v := range m {
		lower[strings.ToLower(k)] = v
	}
	return func(key string) string { return lower[strings.ToLower(key)] }
}

// certDir is a directory with the files a Docker TLS setup has.
func certDir(t *testing.T, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("-----BEGIN CERTIFICATE-----\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func reString(re *regexp.Regexp) any {
	if re == nil {
		return nil
	}
	return re.String()
}

// TestParseAcceptsEachKey: one row per accepted form of each key; the
// property names are spelled in varying case on purpose.
func TestParseAcceptsEachKey(t *testing.T) {
	goodCerts := certDir(t, "ca.pem", "cert.pem", "key.pem")
	for _, tc := range []struct {
		name  string
		props map[string]string
		got   func(conf.Config) any
		want  any
	}{
		{"docker_host unix", map[string]string{"Docker_Host": "unix:///var/run/docker.sock"},
			func(c conf.Config) any { return c.DockerHost }, "unix:///var/run/docker.sock"},
		{"docker_host tcp", map[string]string{"docker_host": "tcp://10.0.0.2:2376"},
			func(c conf.Config) any { return c.DockerHost }, "tcp://10.0.0.2:2376"},
		{"docker_host spaces trimmed", map[string]string{"DOCKER_HOST": "  unix:///run/docker.sock  "},
			func(c conf.Config) any { return c.DockerHost }, "unix:///run/docker.sock"},
		{"include_names", map[string]string{"Include_Names": "^web-[0-9]+$"},
			func(c conf.Config) any { return reString(c.IncludeNames) }, "^web-[0-9]+$"},
		{"exclude_names", map[string]string{"exclude_names": "fluent|sidecar"},
			func(c conf.Config) any { return reString(c.ExcludeNames) }, "fluent|sidecar"},
		{"include_labels key and key=value", map[string]string{"Include_Labels": "a, b=c"},
			func(c conf.Config) any { return c.IncludeLabels },
			[]conf.LabelMatch{{Key: "a", AnyValue: true}, {Key: "b", Value: "c"}}},
		{"exclude_labels empty value", map[string]string{"Exclude_Labels": "logging=off,tmp="},
			func(c conf.Config) any { return c.ExcludeLabels },
			[]conf.LabelMatch{{Key: "logging", Value: "off"}, {Key: "tmp", Value: ""}}},
		{"stdout off", map[string]string{"Stdout": "off"}, func(c conf.Config) any { return c.Stdout }, false},
		{"stdout On", map[string]string{"Stdout": "On"}, func(c conf.Config) any { return c.Stdout }, true},
		{"stderr false", map[string]string{"stderr": "false"}, func(c conf.Config) any { return c.Stderr }, false},
		{"read_from_head on", map[string]string{"Read_From_Head": "on"}, func(c conf.Config) any { return c.ReadFromHead }, true},
		{"read_from_head 0", map[string]string{"Read_From_Head": "0"}, func(c conf.Config) any { return c.ReadFromHead }, false},
		{"stream_refresh 30s", map[string]string{"Stream_Refresh": "30s"}, func(c conf.Config) any { return c.StreamRefresh }, 30 * time.Second},
		{"stream_refresh bare seconds", map[string]string{"Stream_Refresh": "5"}, func(c conf.Config) any { return c.StreamRefresh }, 5 * time.Second},
		{"stream_refresh 1m30s", map[string]string{"stream_refresh": "1m30s"}, func(c conf.Config) any { return c.StreamRefresh }, 90 * time.Second},
		{"stream_refresh at the minimum", map[string]string{"Stream_Refresh": "100ms"}, func(c conf.Config) any { return c.StreamRefresh }, 100 * time.Millisecond},
		{"max_line_size 16K", map[string]string{"Max_Line_Size": "16K"}, func(c conf.Config) any { return c.MaxLineSize }, 16 * 1024},
		{"max_line_size 1M", map[string]string{"Max_Line_Size": "1M"}, func(c conf.Config) any { return c.MaxLineSize }, 1024 * 1024},
		{"max_line_size 2MiB", map[string]string{"Max_Line_Size": "2MiB"}, func(c conf.Config) any { return c.MaxLineSize }, 2 * 1024 * 1024},
		{"max_line_size 512KB", map[string]string{"max_line_size": "512KB"}, func(c conf.Config) any { return c.MaxLineSize }, 512 * 1024},
		{"max_line_size bytes", map[string]string{"Max_Line_Size": "3000"}, func(c conf.Config) any { return c.MaxLineSize }, 3000},
		{"queue_max_size 64M", map[string]string{"Queue_Max_Size": "64M"}, func(c conf.Config) any { return c.QueueMaxSize }, 64 * 1024 * 1024},
		{"queue_max_size 1G", map[string]string{"Queue_Max_Size": "1g"}, func(c conf.Config) any { return c.QueueMaxSize }, 1024 * 1024 * 1024},
		{"queue_max_size at the minimum", map[string]string{"Queue_Max_Size": "64K"}, func(c conf.Config) any { return c.QueueMaxSize }, 64 * 1024},
		{"max_line_size at the maximum", map[string]string{"Max_Line_Size": "16M"}, func(c conf.Config) any { return c.MaxLineSize }, 16 * 1024 * 1024},
		{"plugin_log_level debug", map[string]string{"Plugin_Log_Level": "debug"}, func(c conf.Config) any { return c.LogLevel }, logrus.DebugLevel},
		{"plugin_log_level WARN", map[string]string{"plugin_log_level": "WARN"}, func(c conf.Config) any { return c.LogLevel }, logrus.WarnLevel},
		{"db", map[string]string{"DB": "/var/lib/fluent-bit/docker.pos"}, func(c conf.Config) any { return c.DB }, "/var/lib/fluent-bit/docker.pos"},
		{"db_margin 0 for filesystem storage", map[string]string{"DB_Margin": "0"}, func(c conf.Config) any { return c.DBMargin }, time.Duration(0)},
		{"db_margin 10s", map[string]string{"db_margin": "10s"}, func(c conf.Config) any { return c.DBMargin }, 10 * time.Second},
		{"labels on", map[string]string{"Labels": "on"}, func(c conf.Config) any { return c.Labels }, true},
		{"label_keys", map[string]string{"Label_Keys": "app, tier"}, func(c conf.Config) any { return c.LabelKeys }, []string{"app", "tier"}},
		{"compose_fields off", map[string]string{"Compose_Fields": "off"}, func(c conf.Config) any { return c.ComposeFields }, false},
		{"metrics_listen", map[string]string{"Metrics_Listen": "127.0.0.1:2021"}, func(c conf.Config) any { return c.MetricsListen }, "127.0.0.1:2021"},
		{"metrics_listen every interface", map[string]string{"Metrics_Listen": ":2021"}, func(c conf.Config) any { return c.MetricsListen }, ":2021"},
		{"metrics_container_labels", map[string]string{"Metrics_Listen": ":2021", "Metrics_Container_Labels": "on"},
			func(c conf.Config) any { return c.MetricsContainerLabels }, true},
		{"docker_cert_path", map[string]string{"Docker_Host": "tcp://10.0.0.2:2376", "Docker_Cert_Path": goodCerts},
			func(c conf.Config) any { return c.DockerCertPath }, goodCerts},
		{"logs_from default", map[string]string{}, func(c conf.Config) any { return c.LogsFrom }, jsonfile.Auto},
		{"logs_from files", map[string]string{"Logs_From": "Files", "Containers_Path": goodCerts},
			func(c conf.Config) any { return c.LogsFrom }, jsonfile.Files},
		{"logs_from api", map[string]string{"Logs_From": "api"}, func(c conf.Config) any { return c.LogsFrom }, jsonfile.API},
		{"containers_path default", map[string]string{}, func(c conf.Config) any { return c.ContainersPath }, "/var/lib/docker/containers"},
		{"containers_path", map[string]string{"Containers_Path": "/host/docker/containers/"},
			func(c conf.Config) any { return c.ContainersPath }, "/host/docker/containers"},
		{"docker_tls_verify off", map[string]string{"Docker_TLS_Verify": "off"}, func(c conf.Config) any { return c.DockerTLSVerify }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := conf.Parse(props(tc.props))
			if err != nil {
				t.Fatalf("Parse(%v): %v", tc.props, err)
			}
			if got := tc.got(c); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse(%v) = %#v, want %#v", tc.props, got, tc.want)
			}
		})
	}
}

// TestParseRejectsBadValueNamingItsKey: one row per way a value can be
// wrong; the error names the key in lower case and is ErrInvalid.
func TestParseRejectsBadValueNamingItsKey(t *testing.T) {
	halfCerts := certDir(t, "ca.pem", "cert.pem")
	goodCerts := certDir(t, "ca.pem", "cert.pem", "key.pem")
	for _, tc := range []struct {
		name  string
		props map[string]string
		key   string // the key the error must name
	}{
		{"docker_host http scheme", map[string]string{"Docker_Host": "http://10.0.0.2:2375"}, "docker_host"},
		{"docker_host bare path", map[string]string{"Docker_Host": "/var/run/docker.sock"}, "docker_host"},
		{"docker_host scheme only", map[string]string{"Docker_Host": "unix://"}, "docker_host"},
		{"include_names bad regexp", map[string]string{"Include_Names": "web-(["}, "include_names"},
		{"exclude_names bad regexp", map[string]string{"Exclude_Names": "*sidecar"}, "exclude_names"},
		{"include_labels empty key", map[string]string{"Include_Labels": "=x"}, "include_labels"},
		{"exclude_labels empty entry", map[string]string{"Exclude_Labels": "a,,b"}, "exclude_labels"},
		{"stdout bad", map[string]string{"Stdout": "maybe"}, "stdout"},
		{"stderr bad", map[string]string{"Stderr": "2"}, "stderr"},
		{"stdout and stderr both off", map[string]string{"Stdout": "off", "Stderr": "no"}, "stdout"},
		{"read_from_head bad", map[string]string{"Read_From_Head": "sometimes"}, "read_from_head"},
		{"db_margin negative", map[string]string{"DB_Margin": "-1s"}, "db_margin"},
		{"stream_refresh banana", map[string]string{"Stream_Refresh": "banana"}, "stream_refresh"},
		{"stream_refresh below minimum", map[string]string{"Stream_Refresh": "1ms"}, "stream_refresh"},
		{"stream_refresh bare seconds below minimum", map[string]string{"Stream_Refresh": "0.05"}, "stream_refresh"},
		{"stream_refresh negative", map[string]string{"Stream_Refresh": "-30s"}, "stream_refresh"},
		{"max_line_size negative", map[string]string{"Max_Line_Size": "-1"}, "max_line_size"},
		{"max_line_size x", map[string]string{"Max_Line_Size": "x"}, "max_line_size"},
		{"max_line_size zero", map[string]string{"Max_Line_Size": "0"}, "max_line_size"},
		{"max_line_size fraction", map[string]string{"Max_Line_Size": "1.5M"}, "max_line_size"},
		{"max_line_size suffix only", map[string]string{"Max_Line_Size": "K"}, "max_line_size"},
		{"max_line_size over a TiB", map[string]string{"Max_Line_Size": "2048G"}, "max_line_size"},
		// 17179869185 * 2^30 = 2^64 + 2^30: wraps to 1 GiB in int64.
		{"max_line_size overflowing int64", map[string]string{"Max_Line_Size": "17179869185G"}, "max_line_size"},
		{"max_line_size over 16M", map[string]string{"Max_Line_Size": "16777217"}, "max_line_size"},
		{"max_line_size 1G", map[string]string{"Max_Line_Size": "1G"}, "max_line_size"},
		{"queue_max_size too small", map[string]string{"Queue_Max_Size": "1K"}, "queue_max_size"},
		{"queue_max_size over 1G", map[string]string{"Queue_Max_Size": "1073741825"}, "queue_max_size"},
		{"queue_max_size 4G", map[string]string{"Queue_Max_Size": "4G"}, "queue_max_size"},
		{"queue_max_size bad", map[string]string{"Queue_Max_Size": "lots"}, "queue_max_size"},
		{"plugin_log_level loud", map[string]string{"Plugin_Log_Level": "loud"}, "plugin_log_level"},
		{"labels bad", map[string]string{"Labels": "all"}, "labels"},
		{"logs_from bad", map[string]string{"Logs_From": "disk"}, "logs_from"},
		{"containers_path relative", map[string]string{"Containers_Path": "docker/containers"}, "containers_path"},
		{"containers_path unreadable with files", map[string]string{"Logs_From": "files", "Containers_Path": "/nonexistent/containers"}, "containers_path"},
		{"label_keys empty entry", map[string]string{"Label_Keys": "app,"}, "label_keys"},
		{"label_keys with labels on", map[string]string{"Labels": "on", "Label_Keys": "app"}, "label_keys"},
		{"compose_fields bad", map[string]string{"Compose_Fields": "both"}, "compose_fields"},
		{"metrics_listen no port", map[string]string{"Metrics_Listen": "2021"}, "metrics_listen"},
		{"metrics_listen named port", map[string]string{"Metrics_Listen": "banana:xx"}, "metrics_listen"},
		{"metrics_listen port 0", map[string]string{"Metrics_Listen": "127.0.0.1:0"}, "metrics_listen"},
		{"metrics_listen port too big", map[string]string{"Metrics_Listen": ":70000"}, "metrics_listen"},
		{"metrics_container_labels without listen", map[string]string{"Metrics_Container_Labels": "on"}, "metrics_container_labels"},
		{"metrics_container_labels bad", map[string]string{"Metrics_Listen": ":2021", "Metrics_Container_Labels": "x"}, "metrics_container_labels"},
		{"docker_cert_path missing", map[string]string{"Docker_Host": "tcp://h:2376", "Docker_Cert_Path": filepath.Join(t.TempDir(), "nope")}, "docker_cert_path"},
		{"docker_cert_path missing key.pem", map[string]string{"Docker_Host": "tcp://h:2376", "Docker_Cert_Path": halfCerts}, "docker_cert_path"},
		{"docker_cert_path with unix host", map[string]string{"Docker_Host": "unix:///var/run/docker.sock", "Docker_Cert_Path": goodCerts}, "docker_cert_path"},
		{"docker_tls_verify bad", map[string]string{"Docker_TLS_Verify": "strict"}, "docker_tls_verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := conf.Parse(props(tc.props))
			if err == nil {
				t.Fatalf("Parse(%v) = %+v, want an error", tc.props, c)
			}
			if !errors.Is(err, conf.ErrInvalid) {
				t.Errorf("error %v is not conf.ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.key) {
				t.Errorf("error %q does not name %s", err, tc.key)
			}
			if !reflect.DeepEqual(c, conf.Config{}) {
				t.Errorf("Parse returned a config with its error: %+v", c)
			}
		})
	}
}

func TestParseEmptyValueMeansDefault(t *testing.T) {
	want, err := conf.Parse(props(nil))
	if err != nil {
		t.Fatalf("Parse with nothing set: %v", err)
	}
	defaults := conf.Config{
		Stdout: true, Stderr: true,
		StreamRefresh: 30 * time.Second,
		MaxLineSize:   1 << 20,
		QueueMaxSize:  64 << 20,
		LogLevel:      logrus.InfoLevel,
		DBMargin:      5 * time.Second,
		ComposeFields: true, DockerTLSVerify: true,
		LogsFrom: jsonfile.Auto, ContainersPath: "/var/lib/docker/containers",
	}
	if !reflect.DeepEqual(want, defaults) {
		t.Errorf("defaults = %+v, want %+v", want, defaults)
	}
	for _, blank := range []string{"", "   ", "\t"} {
		m := map[string]string{}
		for _, k := range conf.Keys {
			m[k.Name] = blank
		}
		got, err := conf.Parse(props(m))
		if err != nil {
			t.Errorf("every key set to %q: %v", blank, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("every key set to %q = %+v, want the defaults %+v", blank, got, want)
		}
	}
}

func TestParseNamesEveryBadKeyInOneError(t *testing.T) {
	_, err := conf.Parse(props(map[string]string{
		"Docker_Host":      "ftp://x",
		"Include_Names":    "(",
		"Exclude_Labels":   "=x",
		"Stream_Refresh":   "banana",
		"Max_Line_Size":    "x",
		"Queue_Max_Size":   "1",
		"Plugin_Log_Level": "loud",
		"Read_From_Head":   "perhaps",
	}))
	if err == nil {
		t.Fatal("Parse accepted eight bad values")
	}
	if !errors.Is(err, conf.ErrInvalid) {
		t.Errorf("error is not conf.ErrInvalid: %v", err)
	}
	for _, key := range []string{"docker_host", "include_names", "exclude_labels", "stream_refresh",
		"max_line_size", "queue_max_size", "plugin_log_level", "read_from_head"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
	for _, good := range []string{"stdout", "stderr", "exclude_names", "include_labels"} {
		if strings.Contains(err.Error(), good+" ") {
			t.Errorf("error names %s, which was not set:\n%v", good, err)
		}
	}
}

// The keys Parse reads are exactly conf.Keys, so that a list checked
// against Fluent Bit's own keys is the whole list.
func TestParseReadsExactlyKeys(t *testing.T) {
	asked := map[string]bool{}
	if _, err := conf.Parse(func(key string) string { asked[strings.ToLower(key)] = true; return "" }); err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, k := range conf.Keys {
		listed[strings.ToLower(k.Name)] = true
		if !asked[strings.ToLower(k.Name)] {
			t.Errorf("conf.Keys has %s, which Parse never reads", k.Name)
		}
	}
	for k := range asked {
		if !listed[k] {
			t.Errorf("Parse reads %s, which conf.Keys does not list", k)
		}
	}
}

// From Fluent Bit's flb_input_set_property: properties the core takes for
// itself never reach the plugin.
var fluentBitCoreKeys = []string{
	"name", "tag", "log_level", "log_suppress_interval", "routable", "alias", "mem_buf_limit",
	"listen", "host", "port", "tls", "storage.type", "storage.pause_on_chunks_overlimit",
	"threaded", "rate_window",
}

var fluentBitCorePrefixes = []string{"tls.", "thread.ring_buffer.", "rate_gate", "net."}

func TestKeysAvoidFluentBitCoreKeys(t *testing.T) {
	for _, key := range conf.Keys {
		k := key.Name
		lk := strings.ToLower(k)
		for _, core := range fluentBitCoreKeys {
			if lk == core {
				t.Errorf("key %s is consumed by Fluent Bit's core and never reaches the plugin", k)
			}
		}
		for _, prefix := range fluentBitCorePrefixes {
			if strings.HasPrefix(lk, prefix) {
				t.Errorf("key %s falls under Fluent Bit's core %s* keys", k, prefix)
			}
		}
	}
}

func TestIncludeAppliesNameAndLabelFilters(t *testing.T) {
	web := capture.Container{Name: "web-1", Labels: map[string]string{"app": "web", "tier": "front", "logging": "on"}}
	db := capture.Container{Name: "db-1", Labels: map[string]string{"app": "db", "tier": "back"}}
	bare := capture.Container{Name: "web-2"} // no labels at all
	for _, tc := range []struct {
		name  string
		props map[string]string
		want  map[string]bool // container name -> included
	}{
		{"no filter takes everything", nil, map[string]bool{"web-1": true, "db-1": true, "web-2": true}},
		{"include_names", map[string]string{"Include_Names": "^web-"}, map[string]bool{"web-1": true, "db-1": false, "web-2": true}},
		{"exclude_names", map[string]string{"Exclude_Names": "-2$"}, map[string]bool{"web-1": true, "db-1": true, "web-2": false}},
		{"exclude wins over include", map[string]string{"Include_Names": "^web-", "Exclude_Names": "1"}, map[string]bool{"web-1": false, "db-1": false, "web-2": true}},
		{"include label needs every entry", map[string]string{"Include_Labels": "app=web,tier=back"}, map[string]bool{"web-1": false, "db-1": false, "web-2": false}},
		{"include label key only", map[string]string{"Include_Labels": "tier"}, map[string]bool{"web-1": true, "db-1": true, "web-2": false}},
		{"include label key and value", map[string]string{"Include_Labels": "app=db, tier"}, map[string]bool{"web-1": false, "db-1": true, "web-2": false}},
		{"exclude label any entry", map[string]string{"Exclude_Labels": "logging,tier=back"}, map[string]bool{"web-1": false, "db-1": false, "web-2": true}},
		{"exclude label value must match", map[string]string{"Exclude_Labels": "logging=off"}, map[string]bool{"web-1": true, "db-1": true, "web-2": true}},
		{"names and labels together", map[string]string{"Include_Names": "^web-", "Include_Labels": "app=web"}, map[string]bool{"web-1": true, "db-1": false, "web-2": false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := conf.Parse(props(tc.props))
			if err != nil {
				t.Fatal(err)
			}
			for _, ct := range []capture.Container{web, db, bare} {
				if got := c.Include(ct); got != tc.want[ct.Name] {
					t.Errorf("Include(%s %v) = %v, want %v", ct.Name, ct.Labels, got, tc.want[ct.Name])
				}
			}
		})
	}
}
