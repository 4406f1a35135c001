package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/alqd/alqd/store"
)

// TestBackupCommandToFIFO runs alqd backup with --out naming a FIFO, in
// place of a pipe into another program or /dev/null. The stream, several
// pipe buffers long, must go into the FIFO. Renaming a temporary file over
// it would replace the FIFO and leave its reader with nothing.
func TestBackupCommandToFIFO(t *testing.T) {
	dir := newTestStore(t, 2500)
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// The test holds the FIFO open for writing, so that the reader's open
	// returns at once and its reads end only when the test closes it.
	hold, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	type result struct {
		data []byte
		err  error
	}
	read := make(chan result, 1)
	go func() {
		f, err := os.Open(fifo)
		if err != nil {
			read <- result{err: err}
			return
		}
		defer f.Close()
		data, err := io.ReadAll(f)
		read <- result{data, err}
	}()

	code, _, stderr := runTool(t, nil, "backup", "--data-dir", dir, "--out", fifo)
	if err := hold.Close(); err != nil {
		t.Fatal(err)
	}
	got := <-read
	if code != exitOK {
		t.Fatalf("backup --out FIFO: exit code %d, stderr %q", code, stderr)
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("after the backup %s has mode %v (%v), want the FIFO still there", fifo, fi.Mode(), err)
	}
	if _, err := os.Stat(fifo + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("the backup left %s.tmp: %v", fifo, err)
	}
	if got.err != nil {
		t.Fatalf("reading the FIFO: %v", got.err)
	}
	info, err := store.Restore(context.Background(), filepath.Join(t.TempDir(), "restored"), bytes.NewReader(got.data), store.Options{})
	if err != nil {
		t.Fatalf("Restore of the %d bytes read from the FIFO: %v", len(got.data), err)
	}
	if info.Bindings != 2500 {
		t.Errorf("the stream from the FIFO has %d bindings, want 2500", info.Bindings)
	}
}

// TestBackupCommandToFIFOWithoutReader checks that a backup into a FIFO
// that no program reads fails at once with a message naming the cause,
// instead of blocking in open(2) where no signal can end it.
func TestBackupCommandToFIFOWithoutReader(t *testing.T) {
	dir := newTestStore(t, 3)
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runTool(t, nil, "backup", "--data-dir", dir, "--out", fifo)
	if code != exitFailure || !strings.Contains(stderr, "no process reads") {
		t.Errorf("backup into a FIFO without reader: exit code %d, stderr %q; want %d and the missing reader named", code, stderr, exitFailure)
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("after the backup %s has mode %v (%v), want the FIFO still there", fifo, fi.Mode(), err)
	}
}
