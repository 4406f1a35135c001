package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/alqd/alqd/server"
)

func TestParseOptionsTLS(t *testing.T) {
	o, err := parseOptions([]string{
		"--data-dir", "/tmp/d", "--active",
		"--tls-cert", "/etc/alqd/cert.pem", "--tls-key", "/etc/alqd/key.pem", "--tls-client-ca", "/etc/alqd/ca.pem",
		"--tls-allow", "cn:relay-1,dns:Relay2.Example.NET", "--tls-allow", "ip:2001:db8::7",
		"--tls-handshake-timeout", "3s",
	}, io.Discard)
	if err != nil {
		t.Fatalf("parseOptions: %v", err)
	}
	c := o.server.TLS
	if c.CertFile != "/etc/alqd/cert.pem" || c.KeyFile != "/etc/alqd/key.pem" || c.ClientCAFile != "/etc/alqd/ca.pem" {
		t.Errorf("TLS files = %q %q %q", c.CertFile, c.KeyFile, c.ClientCAFile)
	}
	want := []server.CertPattern{
		{Kind: server.CertCommonName, Value: "relay-1"},
		{Kind: server.CertDNSName, Value: "relay2.example.net"},
		{Kind: server.CertIPAddress, Value: "2001:db8::7"},
	}
	if len(c.Allow) != len(want) {
		t.Fatalf("Allow = %v, want %v", c.Allow, want)
	}
	for i := range want {
		if c.Allow[i] != want[i] {
			t.Errorf("Allow[%d] = %v, want %v", i, c.Allow[i], want[i])
		}
	}
	if c.HandshakeTimeout != 3*time.Second {
		t.Errorf("HandshakeTimeout = %v, want 3s", c.HandshakeTimeout)
	}
	if o.server.Insecure {
		t.Error("Insecure set without --insecure")
	}
}

func TestParseOptionsTLSErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"active without transport", []string{"--active"}, "--insecure"},
		{"certificate without key", []string{"--tls-cert", "c.pem", "--tls-client-ca", "ca.pem"}, "--tls-key"},
		{"allow-list without TLS", []string{"--tls-allow", "cn:relay-1"}, "--tls-allow"},
		{"unknown allow-list prefix", []string{"--tls-allow", "email:a@example.net"}, "cn:, dns:, ip:, uri: or sha256: followed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseOptions(append([]string{"--data-dir", "/tmp/d"}, tc.args...), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseOptions error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestReloadOnSignal(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal)
	var calls atomic.Int32
	fail := errors.New("broken key file")
	reload := func() error {
		if calls.Add(1) == 1 {
			return fail
		}
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		reloadOnSignal(ctx, sig, reload, true, slog.New(slog.DiscardHandler))
	}()

	// A failed reload does not stop later ones.
	sig <- syscall.SIGHUP
	sig <- syscall.SIGHUP
	sig <- syscall.SIGHUP
	cancel()
	<-done
	if got := calls.Load(); got != 3 {
		t.Errorf("reload called %d times for three signals, want 3", got)
	}

	// Without TLS a SIGHUP reloads nothing.
	ctx, cancel = context.WithCancel(context.Background())
	done = make(chan struct{})
	go func() {
		defer close(done)
		reloadOnSignal(ctx, sig, func() error { t.Error("reload called without TLS"); return nil }, false, slog.New(slog.DiscardHandler))
	}()
	sig <- syscall.SIGHUP
	cancel()
	<-done
}
