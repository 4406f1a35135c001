package server

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

func TestShutdownBeforeRun(t *testing.T) {
	st := openStore(t, nil)
	srv, err := New(testConfig(), st, WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown before Run: %v", err)
	}

	done := make(chan error, 1)
	go func() { done <- srv.Run() }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Run after Shutdown returned %v, want ErrServerClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run after Shutdown did not return")
	}
}

func TestRunListenAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	cfg := testConfig()
	cfg.Listen = ln.Addr().String()
	cfg.ListenUDP = "off"
	st := openStore(t, nil)
	srv, err := New(cfg, st, WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Run()
	if err == nil {
		t.Fatal("Run on an address in use returned nil")
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Fatalf("Run on an address in use returned %v, want the bind error", err)
	}
}
