package server

import (
	"os"
	"runtime"
	"testing"

	"github.com/alqd/alqd/store"
)

// filesOf is a Store that reports its open file limit.
type filesOf struct {
	Store
	files int
}

func (f filesOf) MaxOpenFiles() int { return f.files }

// plainStore is a Store that does not report its open file limit.
type plainStore struct{ Store }

func TestFileReserve(t *testing.T) {
	tests := []struct {
		name  string
		st    Store
		loops int
		want  uint64
	}{
		{"store with the default limit, two loops", filesOf{files: store.DefaultMaxOpenFiles}, 2, 500 + 32 + 8 + 256},
		{"store with its own limit, sixteen loops", filesOf{files: 2000}, 16, 2000 + 32 + 64 + 256},
		{"store without a limit", plainStore{}, 2, 1000 + 32 + 8 + 256},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := fileReserve(tc.st, tc.loops); got != tc.want {
				t.Errorf("fileReserve = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestConnsForFileLimit(t *testing.T) {
	tests := []struct {
		limit, reserve uint64
		want           int
	}{
		{20000, 796, 19204},
		{1024, 796, 228},
		{860, 796, 430}, // the reserve and 64 connections do not fit: half
		{100, 796, 50},
	}
	for _, tc := range tests {
		if got := connsForFileLimit(tc.limit, tc.reserve); got != tc.want {
			t.Errorf("connsForFileLimit(%d, %d) = %d, want %d", tc.limit, tc.reserve, got, tc.want)
		}
	}
}

// TestNineteenThousandConnsFit checks the configuration of the filtered
// fanout benchmark: two event loops, a store with default options, the
// default cap on connections from outside Allow, and a 20,000-descriptor
// limit leave room for 19,000 requestors.
func TestNineteenThousandConnsFit(t *testing.T) {
	st := openStore(t, nil)
	cfg := testConfig().withDefaults()
	fit := connsForFileLimit(20000, fileReserve(st, cfg.EventLoops)) - cfg.MaxUnallowedConns
	if fit < 19000 {
		t.Errorf("connections that fit in 20,000 descriptors = %d, want at least 19,000", fit)
	}
}

// TestFileReserveCoversServer counts the descriptors that starting a server
// opens (listeners, event loops, UDP, with Active Leasequery and TLS on)
// and checks that the reserve's fixed and per-loop counts cover them.
func TestFileReserveCoversServer(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts descriptors in /proc/self/fd")
	}
	st := openStore(t, nil)
	f := newTLSFixture(t)
	cfg := f.activeConfig()
	cfg.Insecure = true

	before := openDescriptors(t)
	startServer(t, st, cfg)
	opened := openDescriptors(t) - before
	if budget := fixedFiles + loopFiles*cfg.EventLoops; opened > budget {
		t.Errorf("starting the server opened %d descriptors, over the %d the reserve counts for it", opened, budget)
	}
}

// openDescriptors returns the number of descriptors the process has open.
func openDescriptors(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("listing /proc/self/fd: %v", err)
	}
	return len(entries)
}
