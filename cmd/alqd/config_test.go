package main

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/ingest"
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
		want string // part of the message; empty checks only that it fails
	}{
		{"no data dir", []string{"--listen", "[::1]:1"}, ""},
		{"bad prefix", []string{"--data-dir", "/d", "--allow", "nonsense"}, ""},
		{"bad option code", []string{"--data-dir", "/d", "--deny-option", "70000"}, ""},
		{"option not deniable", []string{"--data-dir", "/d", "--deny-option", "2"}, ""},
		{"active", []string{"--data-dir", "/d", "--active"}, "--active needs a transport"},
		{"insecure alone", []string{"--data-dir", "/d", "--insecure"}, "--insecure allows plaintext"},
		{"negative trim interval", []string{"--data-dir", "/d", "--trim-interval", "-1s"}, "--trim-interval -1s is negative"},
		{"bad log format", []string{"--data-dir", "/d", "--log-format", "xml"}, ""},
		{"unknown file key", []string{"--config", unknown}, ""},
		{"stray argument", []string{"--data-dir", "/d", "extra"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseOptions(tt.args, io.Discard)
			if err == nil {
				t.Fatalf("parseOptions(%q) succeeded, want an error", tt.args)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseOptions(%q) = %v, want a message with %q", tt.args, err, tt.want)
			}
		})
	}
}

func TestParseOptionsUnallowed(t *testing.T) {
	o, err := parseOptions([]string{"--data-dir", "/d", "--max-unallowed-conns", "10", "--unallowed-timeout", "2s"}, io.Discard)
	if err != nil {
		t.Fatalf("parseOptions: %v", err)
	}
	if o.server.MaxUnallowedConns != 10 || o.server.UnallowedTimeout != 2*time.Second {
		t.Errorf("MaxUnallowedConns %d, UnallowedTimeout %v; want 10, 2s", o.server.MaxUnallowedConns, o.server.UnallowedTimeout)
	}
	for _, args := range [][]string{{"--max-unallowed-conns", "-1"}, {"--unallowed-timeout", "-1s"}} {
		if _, err := parseOptions(append([]string{"--data-dir", "/d"}, args...), io.Discard); err == nil {
			t.Errorf("parseOptions(%q) succeeded, want an error", args)
		}
	}
}

func TestParseOptionsKeaSubnetLinks(t *testing.T) {
	dir := t.TempDir()
	writeConfig := func(name, body string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	link1, link2 := netip.MustParseAddr("2001:db8:1::1"), netip.MustParseAddr("2001:db8:2::1")
	tests := []struct {
		name string
		args []string
		want map[uint32]netip.Addr
	}{
		{"none", []string{"--data-dir", "/d"}, nil},
		{"repeated flag", []string{"--data-dir", "/d", "--kea-subnet-link", "1=2001:db8:1::1", "--kea-subnet-link", "2=2001:db8:2::1"},
			map[uint32]netip.Addr{1: link1, 2: link2}},
		{"comma-separated", []string{"--data-dir", "/d", "--kea-subnet-link", "1=2001:db8:1::1, 2=2001:db8:2::1"},
			map[uint32]netip.Addr{1: link1, 2: link2}},
		{"config file array", []string{"--config", writeConfig("array.json", `{"data-dir": "/d", "kea-subnet-link": ["1=2001:db8:1::1", "2=2001:db8:2::1"]}`)},
			map[uint32]netip.Addr{1: link1, 2: link2}},
		{"config file object", []string{"--config", writeConfig("object.json", `{"data-dir": "/d", "kea-subnet-link": {"1": "2001:db8:1::1", "2": "2001:db8:2::1"}}`)},
			map[uint32]netip.Addr{1: link1, 2: link2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseOptions(tt.args, io.Discard)
			if err != nil {
				t.Fatalf("parseOptions: %v", err)
			}
			if !maps.Equal(o.keaSubnetLinks, tt.want) {
				t.Errorf("kea subnet links = %v, want %v", o.keaSubnetLinks, tt.want)
			}
			if got := followerConfig(o, nil, discardLogger()).SubnetLinks; !maps.Equal(got, tt.want) {
				t.Errorf("FollowerConfig.SubnetLinks = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseOptionsKeaSubnetLinkErrors(t *testing.T) {
	for _, value := range []string{
		"2001:db8:1::1",                   // no subnet-id
		"x=2001:db8:1::1",                 // subnet-id not a number
		"4294967296=2001:db8:1::1",        // subnet-id over 32 bits
		"1=192.0.2.1",                     // IPv4
		"1=::ffff:192.0.2.1",              // IPv4-mapped
		"1=fe80::1%eth0",                  // zone
		"1=::",                            // unspecified
		"1=ff02::1",                       // multicast
		"1=2001:db8:1::1,1=2001:db8:2::1", // one subnet, two links
	} {
		t.Run(value, func(t *testing.T) {
			if _, err := parseOptions([]string{"--data-dir", "/d", "--kea-subnet-link", value}, io.Discard); err == nil {
				t.Errorf("--kea-subnet-link %q accepted, want an error", value)
			}
		})
	}
}

// TestFollowerUsesSubnetLinks runs the follower alqd configures on a lease
// file with a direct client of Kea subnet 1: the binding gets the link of
// --kea-subnet-link.
func TestFollowerUsesSubnetLinks(t *testing.T) {
	const header = "address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname,hwaddr,state,user_context,hwtype,hwaddr_source"
	const direct = "2001:db8:1::1000,00:01:00:01:32:a5:cf:39,30,1796412119,1,20,0,1,128,0,0,,00:0c:01:02:03:04,0,,1,2"
	path := filepath.Join(t.TempDir(), "leases6.csv")
	if err := os.WriteFile(path, []byte(header+"\n"+direct+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := parseOptions([]string{"--data-dir", "/d", "--kea-lease-file", path, "--kea-subnet-link", "1=2001:db8:1::1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg := followerConfig(o, nil, discardLogger())
	cfg.ListBindings = nil // no store to reconcile with
	cfg.DisableInotify = true
	cfg.PollInterval = 5 * time.Millisecond
	st := &memoryStore{}
	f, err := ingest.NewFollower(st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	deadline := time.Now().Add(10 * time.Second)
	for len(st.bindings()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no binding applied after 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := st.bindings()[0].LinkAddress; got != netip.MustParseAddr("2001:db8:1::1") {
		t.Errorf("link-address of the direct client = %v, want 2001:db8:1::1", got)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestParseOptionsTrimInterval(t *testing.T) {
	o, err := parseOptions([]string{"--data-dir", "/d", "--retention", "1h", "--trim-interval", "30s"}, io.Discard)
	if err != nil {
		t.Fatalf("parseOptions: %v", err)
	}
	if o.retention != time.Hour || o.trimInterval != 30*time.Second {
		t.Errorf("retention %v, trim interval %v; want 1h and 30s", o.retention, o.trimInterval)
	}
}
