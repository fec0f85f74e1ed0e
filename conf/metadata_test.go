package conf_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/dockerlogs/fluent-bit-docker-logs/conf"
)

func TestNewKeysDefaults(t *testing.T) {
	c, err := conf.Parse(props(nil))
	if err != nil {
		t.Fatalf("Parse with no keys: %v", err)
	}
	if c.Labels || c.LabelKeys != nil || !c.ComposeFields {
		t.Errorf("metadata defaults: labels %v, label_keys %v, compose_fields %v; want off, none, on",
			c.Labels, c.LabelKeys, c.ComposeFields)
	}
	if c.MetricsListen != "" || c.MetricsContainerLabels {
		t.Errorf("metrics defaults: listen %q, container labels %v; want off", c.MetricsListen, c.MetricsContainerLabels)
	}
	if c.DockerCertPath != "" || !c.DockerTLSVerify {
		t.Errorf("TLS defaults: cert path %q, verify %v; want none and on", c.DockerCertPath, c.DockerTLSVerify)
	}
	o := c.Options()
	if o.Metadata.Labels || o.Metadata.LabelKeys != nil || !o.Metadata.ComposeFields || o.ContainerStats {
		t.Errorf("capture options: %+v, container stats %v", o.Metadata, o.ContainerStats)
	}
}

func TestNewKeysAreParsedAndPassedOn(t *testing.T) {
	certs := certDir(t, "ca.pem", "cert.pem", "key.pem")
	c, err := conf.Parse(props(map[string]string{
		"label_keys":               " team , tier,team ",
		"COMPOSE_FIELDS":           "off",
		"Metrics_Listen":           "127.0.0.1:2021",
		"metrics_container_labels": "on",
		"Docker_Host":              "tcp://10.0.0.1:2376",
		"docker_cert_path":         certs,
		"docker_tls_verify":        "off",
	}))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if !slices.Equal(c.LabelKeys, []string{"team", "tier", "team"}) || c.ComposeFields {
		t.Errorf("label_keys %q, compose_fields %v", c.LabelKeys, c.ComposeFields)
	}
	if c.MetricsListen != "127.0.0.1:2021" || !c.MetricsContainerLabels {
		t.Errorf("metrics_listen %q, metrics_container_labels %v", c.MetricsListen, c.MetricsContainerLabels)
	}
	if c.DockerCertPath != certs || c.DockerTLSVerify {
		t.Errorf("docker_cert_path %q, docker_tls_verify %v", c.DockerCertPath, c.DockerTLSVerify)
	}
	o := c.Options()
	if !slices.Equal(o.Metadata.LabelKeys, c.LabelKeys) || o.Metadata.ComposeFields || !o.ContainerStats {
		t.Errorf("capture options: %+v, container stats %v", o.Metadata, o.ContainerStats)
	}

	c, err = conf.Parse(props(map[string]string{"labels": "on", "metrics_listen": ":9100"}))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if o := c.Options(); !o.Metadata.Labels || c.MetricsListen != ":9100" {
		t.Errorf("labels on: %+v; metrics_listen %q", o.Metadata, c.MetricsListen)
	}
}

func TestMissingCertFilesAreNamed(t *testing.T) {
	dir := certDir(t, "ca.pem")
	_, err := conf.Parse(props(map[string]string{"docker_cert_path": dir}))
	if err == nil || !strings.Contains(err.Error(), "cert.pem, key.pem") {
		t.Errorf("Parse = %v, want an error naming cert.pem, key.pem", err)
	}
}
