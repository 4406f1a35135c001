package ingest

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alqd/alqd/store"
)

// countingStore is a Store that only counts, so that benchmarks measure the
// follower and not a store. It cancels the run once it has seen target
// changes and a complete position.
type countingStore struct {
	changes atomic.Int64
	target  int64
	done    context.CancelFunc
}

func (s *countingStore) Apply(_ context.Context, changes []store.Binding, meta map[string][]byte) (uint64, error) {
	n := s.changes.Add(int64(len(changes)))
	if n >= s.target && s.done != nil {
		var pos position
		if raw := meta[DefaultPositionKey]; pos.decode(raw) == nil && pos.complete {
			s.done()
		}
	}
	return uint64(n), nil
}

func (s *countingStore) Meta(string) ([]byte, error) { return nil, nil }

// writeLeaseFile writes a Kea lease file of n generated rows: new bindings,
// extensions, releases, reclaims and flushes of 20,000 clients, a third of
// them IA_PD and half of them relayed.
func writeLeaseFile(tb testing.TB, path string, n int) int64 {
	tb.Helper()
	file, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(file, 1<<20)
	w.WriteString(keaHeader + "\n")
	gen := newChurn(99, 20000)
	for range n {
		w.WriteString(gen.next())
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	fi, err := file.Stat()
	if err != nil {
		tb.Fatal(err)
	}
	file.Close()
	return fi.Size()
}

// BenchmarkFollower measures a full load of a 200,000-row lease file into a
// store that only counts; one op is the whole file.
func BenchmarkFollower(b *testing.B) {
	const rows = 200000
	path := filepath.Join(b.TempDir(), "leases6.csv")
	size := writeLeaseFile(b, path, rows)
	b.SetBytes(size)
	b.ReportAllocs()

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for b.Loop() {
		ctx, cancel := context.WithCancel(context.Background())
		st := &countingStore{target: rows, done: cancel}
		f, err := NewFollower(st, FollowerConfig{Path: path, DisableInotify: true})
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Run(ctx); err != nil {
			b.Fatal(err)
		}
		cancel()
		if got := st.changes.Load(); got != rows {
			b.Fatalf("store got %d changes, want %d", got, rows)
		}
	}
	runtime.ReadMemStats(&after)
	total := float64(rows) * float64(b.N)
	b.ReportMetric(total/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/total, "allocs/row")
}

// BenchmarkParseRow measures the parser alone on the rows of the Kea test
// file, a third of them relayed.
func BenchmarkParseRow(b *testing.B) {
	lines := readLeaseFile(b)
	var p Parser
	if err := p.SetHeader(lines[0]); err != nil {
		b.Fatal(err)
	}
	rows := lines[1:]
	var row Row
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := p.ParseRow(rows[i], &row); err != nil {
			b.Fatal(err)
		}
		i++
		if i == len(rows) {
			i = 0
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkDecodeRecord measures the NDJSON record decoder.
func BenchmarkDecodeRecord(b *testing.B) {
	line := []byte(recordPD)
	var binding store.Binding
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeRecord(line, &binding); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkAppendRecord measures the NDJSON record encoder of the client.
func BenchmarkAppendRecord(b *testing.B) {
	var binding store.Binding
	if err := DecodeRecord([]byte(recordPD), &binding); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = AppendRecord(buf[:0], &binding); err != nil {
			b.Fatal(err)
		}
	}
}

// TestParseRowAllocs checks the hot path: a direct row, and a relayed row
// whose user_context repeats the previous one, allocate nothing but their
// share of the parser's byte blocks.
func TestParseRowAllocs(t *testing.T) {
	lines := readLeaseFile(t)
	var p Parser
	if err := p.SetHeader(lines[0]); err != nil {
		t.Fatal(err)
	}
	var row Row
	for _, line := range []string{lines[4-1], lines[2-1]} {
		if err := p.ParseRow(line, &row); err != nil {
			t.Fatal(err)
		}
		if allocs := testing.AllocsPerRun(1000, func() { p.ParseRow(line, &row) }); allocs != 0 {
			t.Errorf("ParseRow(%.40s...) allocates %v times per row, want 0", line, allocs)
		}
	}
	binding := row.Binding
	buf := make([]byte, 0, 1024)
	if allocs := testing.AllocsPerRun(1000, func() { buf, _ = AppendRecord(buf[:0], &binding) }); allocs != 0 {
		t.Errorf("AppendRecord allocates %v times per record, want 0", allocs)
	}
}

// BenchmarkHandler measures one ingest API request of 64 records, half of
// them relayed IA_PD, through the handler into a store that only counts:
// reading the body, decoding and validating every record, and the response.
// The anchor, measured in the same run, is decoding the same body alone,
// and x-decode is the request's time over it.
func BenchmarkHandler(b *testing.B) {
	h, err := NewHandler(&countingStore{}, HandlerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	var body []byte
	for i := range 64 {
		if i%2 == 0 {
			body = append(body, recordNA...)
		} else {
			body = append(body, recordPD...)
		}
		body = append(body, '\n')
	}
	const anchorRounds = 500
	began := time.Now()
	for range anchorRounds {
		if _, err := decodeRecords(body); err != nil {
			b.Fatal(err)
		}
	}
	anchor := float64(time.Since(began).Nanoseconds()) / anchorRounds

	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, BindingsPath, bytes.NewReader(body))
		req.Header.Set("Content-Type", ContentTypeNDJSON)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
	perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(perOp/64, "ns/record")
	b.ReportMetric(perOp/anchor, "x-decode")
}
