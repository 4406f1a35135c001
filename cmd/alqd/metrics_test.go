package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/alqd/alqd/ingest"
	"github.com/alqd/alqd/store"
)

// memoryStore is an ingest.Store that keeps the metadata and every change.
type memoryStore struct {
	mu      sync.Mutex
	meta    map[string][]byte
	changes int
	applied []store.Binding
}

func (s *memoryStore) Apply(_ context.Context, changes []store.Binding, meta map[string][]byte) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.meta == nil {
		s.meta = make(map[string][]byte)
	}
	for k, v := range meta {
		s.meta[k] = bytes.Clone(v)
	}
	s.changes += len(changes)
	for i := range changes {
		s.applied = append(s.applied, changes[i].Clone())
	}
	return uint64(s.changes), nil
}

func (s *memoryStore) bindings() []store.Binding {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.applied)
}

func (s *memoryStore) Meta(key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.meta[key]), nil
}

// gather returns every sample of reg as "name{label=value}" -> value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := make(map[string]float64)
	for _, f := range families {
		for _, m := range f.GetMetric() {
			out[sampleName(f.GetName(), m)] = m.GetCounter().GetValue()
		}
	}
	return out
}

func sampleName(name string, m *dto.Metric) string {
	var labels []string
	for _, l := range m.GetLabel() {
		labels = append(labels, l.GetName()+"="+l.GetValue())
	}
	if len(labels) == 0 {
		return name
	}
	return name + "{" + strings.Join(labels, ",") + "}"
}

func TestIngestCollectorHandler(t *testing.T) {
	h, err := ingest.NewHandler(&memoryStore{}, ingest.HandlerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	post := func(path, contentType, body string) {
		t.Helper()
		resp, err := http.Post(srv.URL+path, contentType, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	const record = `{"type":"na","address":"2001:db8::1","client_id":"000300010a0b0c0d0e0f","iaid":7,"preferred_lifetime":300,"valid_lifetime":600,"state":"active","cltt":"2026-12-04T22:05:00Z"}`
	post(ingest.BindingsPath, ingest.ContentTypeNDJSON, record+"\n"+strings.Replace(record, "::1", "::2", 1))
	post(ingest.BindingsPath, ingest.ContentTypeNDJSON, "{")
	post(ingest.BindingsPath, "text/plain", record)
	post("/v1/binding", ingest.ContentTypeNDJSON, record)

	reg := prometheus.NewRegistry()
	reg.MustRegister(newIngestCollector(h, nil))
	got := gather(t, reg)
	want := map[string]float64{
		"alqd_ingest_requests_total{code=200}": 1,
		"alqd_ingest_requests_total{code=400}": 1,
		"alqd_ingest_requests_total{code=404}": 1,
		"alqd_ingest_requests_total{code=405}": 0,
		"alqd_ingest_requests_total{code=413}": 0,
		"alqd_ingest_requests_total{code=415}": 1,
		"alqd_ingest_requests_total{code=503}": 0,
		"alqd_ingest_records_total":            2,
	}
	for name, v := range want {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", name, g, ok, v)
		}
	}
	for name := range got {
		if strings.HasPrefix(name, "alqd_kea_") {
			t.Errorf("series %s exported without a follower", name)
		}
	}
}

func TestIngestCollectorFollower(t *testing.T) {
	const header = "address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname,hwaddr,state,user_context,hwtype,hwaddr_source"
	const row = "2001:db8:1::1000,00:01:00:01:32:a5:cf:39,30,1796412119,1,20,0,1,128,0,0,,00:0c:01:02:03:04,0,,1,2"
	path := filepath.Join(t.TempDir(), "leases6.csv")
	if err := os.WriteFile(path, []byte(header+"\n"+row+"\nnot a lease row\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := ingest.NewFollower(&memoryStore{}, ingest.FollowerConfig{Path: path, PollInterval: 5 * time.Millisecond, DisableInotify: true})
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
	for f.Stats().RowsRead < 2 || f.Stats().ChangesApplied < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("follower stats %+v after 10 s, want 2 rows read and 1 change", f.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(newIngestCollector(nil, f))
	got := gather(t, reg)
	want := map[string]float64{
		"alqd_kea_rows_total{kind=new}":      1,
		"alqd_kea_rows_total{kind=extend}":   0,
		"alqd_kea_rows_total{kind=release}":  0,
		"alqd_kea_rows_read_total":           2,
		"alqd_kea_malformed_rows_total":      1,
		"alqd_kea_changes_applied_total":     1,
		"alqd_kea_reloads_total":             1,
		"alqd_kea_rotations_total":           0,
		"alqd_kea_reconciled_bindings_total": 0,
		"alqd_kea_apply_errors_total":        0,
	}
	for name, v := range want {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", name, g, ok, v)
		}
	}
	if got["alqd_kea_read_bytes_total"] == 0 {
		t.Error("alqd_kea_read_bytes_total = 0, want the file size")
	}
	if _, ok := got["alqd_kea_rows_total{kind=assign}"]; ok {
		t.Error("alqd_kea_rows_total has kind assign, which the follower never counts")
	}
}
