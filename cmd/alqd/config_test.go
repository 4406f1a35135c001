package main

import (
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
)

func TestParseOptionsFlags(t *testing.T) {
	o, err := parseOptions([]string{
		"--listen", "[::1]:15470", "--data-dir", "/tmp/d",
		"--allow", "::1/128,2001:db8::/32", "--allow", "192.0.2.1",
		"--deny-option", "47,100", "--idle-timeout", "90s", "--log-level", "debug",
	}, io.Discard)
	if err != nil {
		t.Fatalf("parseOptions: %v", err)
	}
	wantAllow := []netip.Prefix{
		netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("192.0.2.1/32"),
	}
	if !slices.Equal(o.server.Allow, wantAllow) {
		t.Errorf("Allow = %v, want %v", o.server.Allow, wantAllow)
	}
	if !slices.Equal(o.server.DenyOptions, []codec.OptionCode{47, 100}) {
		t.Errorf("DenyOptions = %v, want [47 100]", o.server.DenyOptions)
	}
	if o.server.IdleTimeout != 90*time.Second {
		t.Errorf("IdleTimeout = %v, want 90s", o.server.IdleTimeout)
	}
	if o.server.Listen != "[::1]:15470" || o.dataDir != "/tmp/d" {
		t.Errorf("Listen %q data-dir %q", o.server.Listen, o.dataDir)
	}
}

func TestParseOptionsConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alqd.json")
	file := `{"data-dir": "/var/lib/alqd", "listen": "[::1]:1547", "allow": ["2001:db8::/32"],
		"max-conns": 100, "data-timeout": "10m", "log-format": "json"}`
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := parseOptions([]string{"--config", path, "--listen", "[::1]:2547"}, io.Discard)
	if err != nil {
		t.Fatalf("parseOptions: %v", err)
	}
	if o.server.Listen != "[::1]:2547" {
		t.Errorf("Listen = %q, want the command line's [::1]:2547", o.server.Listen)
	}
	if o.dataDir != "/var/lib/alqd" || o.server.MaxConns != 100 || o.server.DataTimeout != 10*time.Minute || o.logFormat != "json" {
		t.Errorf("file values not applied: data-dir %q max-conns %d data-timeout %v log-format %q",
			o.dataDir, o.server.MaxConns, o.server.DataTimeout, o.logFormat)
	}
	if !slices.Equal(o.server.Allow, []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}) {
		t.Errorf("Allow = %v", o.server.Allow)
	}
}

func TestParseOptionsErrors(t *testing.T) {
	dir := t.TempDir()
	unknown := filepath.Join(dir, "unknown.json")
	_ = os.WriteFile(unknown, []byte(`{"data-dir": "/d", "listne": "x"}`), 0o600)
	tests := []struct {
		name string
		args []string
	}{
		{"no data dir", []string{"--listen", "[::1]:1"}},
		{"bad prefix", []string{"--data-dir", "/d", "--allow", "nonsense"}},
		{"bad option code", []string{"--data-dir", "/d", "--deny-option", "70000"}},
		{"option not deniable", []string{"--data-dir", "/d", "--deny-option", "2"}},
		{"active", []string{"--data-dir", "/d", "--active"}},
		{"bad log format", []string{"--data-dir", "/d", "--log-format", "xml"}},
		{"unknown file key", []string{"--config", unknown}},
		{"stray argument", []string{"--data-dir", "/d", "extra"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseOptions(tt.args, io.Discard); err == nil {
				t.Errorf("parseOptions(%q) succeeded, want an error", tt.args)
			}
		})
	}
}
