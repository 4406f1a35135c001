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

// TestRestoreCommandPipeEndsEarly runs alqd restore --in - from a pipe
// whose writer closes halfway through the stream, as a failed ssh or curl
// upstream would. The restore must fail as truncated and leave nothing.
func TestRestoreCommandPipeEndsEarly(t *testing.T) {
	dir := newTestStore(t, 500)
	var stream bytes.Buffer
	if code, stderr := runToolTo(t, &stream, "backup", "--data-dir", dir, "--out", "-"); code != exitOK {
		t.Fatalf("backup --out -: exit code %d, stderr %q", code, stderr)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go func() {
		_, _ = w.Write(stream.Bytes()[:stream.Len()/2])
		w.Close()
	}()

	parent := t.TempDir()
	code, _, stderr := runTool(t, r, "restore", "--data-dir", filepath.Join(parent, "restored"), "--in", "-")
	if code != exitFailure || !strings.Contains(stderr, "the backup is truncated") {
		t.Errorf("restore from a pipe that ends early: exit code %d, stderr %q; want %d and truncated", code, stderr, exitFailure)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Errorf("the failed restore left %d entries in %s", len(entries), parent)
	}
}

// runToolTo runs subcommand args[0] in-process with its standard output
// going to stdout, and returns its exit code and standard error.
func runToolTo(t *testing.T, stdout io.Writer, args ...string) (code int, stderr string) {
	t.Helper()
	var errOut bytes.Buffer
	code = storeCommand(args[0])(context.Background(), args[1:], toolIO{stdout: stdout, stderr: &errOut})
	return code, errOut.String()
}
