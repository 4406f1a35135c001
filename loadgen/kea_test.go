package loadgen

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alqd/alqd/ingest"
)

// TestKeaRowFormat pins the rows of one relayed client, written as Kea 2.2
// writes them: compare with a row of a real Kea 2.2 lease file such as
// 2001:db8:2::1000,00:01:00:01:32:a5:cf:38:00:0c:02:00:00:01,30,1796412119,2,20,0,1,128,0,0,,00:0c:02:00:00:01,0,{ "ISC": { "relays": [ { "hop": 0&#x2c "link": "2001:db8:2::1"&#x2c "options": "0x0012…"&#x2c "peer": "2001:db8:1::2" } ] } },1,2
// (our DUID-EN gives Kea no hardware address, so the hwaddr columns are
// empty).
func TestKeaRowFormat(t *testing.T) {
	c := newTestChurn(t, ChurnConfig{Clients: 1, Links: 1, Relays: 1, PDFraction: 1, Stamp: StampNone})
	const ctx = `{ "ISC": { "relays": [ { "hop": 0&#x2c "link": "2001:db8::1"&#x2c "options": "0x` +
		`001200066C696E6B2D30` + // OPTION_INTERFACE_ID "link-0"
		`0025000900007ED97375622D30` + // OPTION_REMOTE_ID 32473 "sub-0"
		`0035000D000200007ED972656C61792D30` + // OPTION_RELAY_ID DUID-EN 32473 "relay-0"
		`"&#x2c "peer": "fe80::200:0:0:0" } ] } }`
	const duid = "00:02:00:00:7e:d9:00:00:00:00:00:00:00:00:00:00:00:00"
	// fixedNow is Unix 1796412089; the lease was granted then.
	want := map[ChangeKind][2]string{
		ChangeNew: {
			"2001:db8:0:0:1::," + duid + ",3600,1796415689,1,1800,0,1,128,0,0,,,0," + ctx + ",,\n",
			"2001:db8:8000::," + duid + ",3600,1796415689,1,1800,2,2,56,0,0,,,0," + ctx + ",,\n",
		},
		ChangeRenew: {
			"2001:db8:0:0:1::," + duid + ",3600,1796415689,1,1800,0,1,128,0,0,,,0," + ctx + ",,\n",
			"2001:db8:8000::," + duid + ",3600,1796415689,1,1800,2,2,56,0,0,,,0," + ctx + ",,\n",
		},
		// Release: lifetimes 0, expire is the last CLTT.
		ChangeRelease: {
			"2001:db8:0:0:1::," + duid + ",0,1796412089,1,0,0,1,128,0,0,,,0," + ctx + ",,\n",
			"2001:db8:8000::," + duid + ",0,1796412089,1,0,2,2,56,0,0,,,0," + ctx + ",,\n",
		},
		// Reclaim: the lease as it was, state 2.
		ChangeExpire: {
			"2001:db8:0:0:1::," + duid + ",3600,1796415689,1,1800,0,1,128,0,0,,,2," + ctx + ",,\n",
			"2001:db8:8000::," + duid + ",3600,1796415689,1,1800,2,2,56,0,0,,,2," + ctx + ",,\n",
		},
	}
	seen := make(map[ChangeKind]bool)
	changes := c.NextChanges(nil, 400, fixedNow)
	for i := 0; i+1 < len(changes); i += 2 {
		kind := changes[i].Kind
		for k := range 2 {
			if got := string(AppendKeaRow(nil, &changes[i+k])); got != want[kind][k] {
				t.Fatalf("%v row %d:\n got %q\nwant %q", kind, k, got, want[kind][k])
			}
		}
		seen[kind] = true
	}
	if len(seen) != int(NumChangeKinds) {
		t.Errorf("only kinds %v came up in 200 events", seen)
	}
}

func TestKeaRowDirectClient(t *testing.T) {
	c := newTestChurn(t, ChurnConfig{Clients: 1, Links: 3, Direct: true, PDFraction: -1, Stamp: StampNone})
	got := string(AppendKeaRow(nil, &c.NextChanges(nil, 1, fixedNow)[0]))
	want := "2001:db8:0:0:1::,00:02:00:00:7e:d9:00:00:00:00:00:00:00:00:00:00:00:00,3600,1796415689,1,1800,0,1,128,0,0,,,0,,,\n"
	if got != want {
		t.Errorf("direct client row:\n got %q\nwant %q", got, want)
	}
}

// TestKeaFileParsesBack writes churn to a lease file and parses it with the
// ingest package's Kea parser: every row must give back the generated
// binding and the row kind of its change.
func TestKeaFileParsesBack(t *testing.T) {
	for _, cfg := range []ChurnConfig{
		{Seed: 1, Clients: 300, Links: 6, Relays: 3},
		{Seed: 2, Clients: 300, Links: 6, Direct: true},
		{Seed: 3, Clients: 300, Stamp: StampRelay, PDFraction: 1},
	} {
		path := filepath.Join(t.TempDir(), "leases6.csv")
		w, err := NewKeaWriter(KeaConfig{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		var all []Change
		c := newTestChurn(t, cfg)
		for range 10 {
			changes := c.NextChanges(nil, 300, fixedNow)
			all = append(all, changes...)
			if err := w.Write(context.Background(), changes); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if st := w.Stats(); st.Rows != 3000 || st.Requests != 10 {
			t.Errorf("stats %+v: want 3000 rows in 10 writes", st)
		}

		lines := readLines(t, path)
		if len(lines) != 3001 || lines[0] != KeaHeader {
			t.Fatalf("%d lines, first %q: want the header and 3000 rows", len(lines), lines[0])
		}
		p := ingest.Parser{SubnetLinks: SubnetLinks(c.Config().Links)}
		if err := p.SetHeader(lines[0]); err != nil {
			t.Fatal(err)
		}
		for i, line := range lines[1:] {
			var row ingest.Row
			if err := p.ParseRow(line, &row); err != nil {
				t.Fatalf("%+v row %d %q: %v", cfg, i, line, err)
			}
			if want := keaRowKind(all[i].Kind); row.Kind != want {
				t.Fatalf("%+v row %d: kind %v, want %v for a %v change", cfg, i, row.Kind, want, all[i].Kind)
			}
			if row.SubnetID != all[i].SubnetID {
				t.Fatalf("%+v row %d: subnet %d, want %d", cfg, i, row.SubnetID, all[i].SubnetID)
			}
			if d := bindingDiff(&row.Binding, &all[i].Binding); d != "" {
				t.Fatalf("%+v row %d: %s", cfg, i, d)
			}
		}
	}
}

// keaRowKind is what the parser makes of the row of a change.
func keaRowKind(k ChangeKind) ingest.RowKind {
	switch k {
	case ChangeRelease:
		return ingest.RowRelease
	case ChangeExpire:
		return ingest.RowExpire
	}
	return ingest.RowAssign
}

// TestKeaFollowerKinds runs the ingest package's Kea follower on a
// generated file. With stable DUIDs (relay stamps) it classifies new
// bindings and renewals exactly as the churn made them.
func TestKeaFollowerKinds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases6.csv")
	w, err := NewKeaWriter(KeaConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	c := newTestChurn(t, ChurnConfig{Seed: 9, Clients: 200, Stamp: StampRelay})
	changes := c.NextChanges(nil, 4000, fixedNow)
	var want KindCounts
	for i := range changes {
		want.add(changes[i].Kind)
	}
	if err := w.Write(context.Background(), changes); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	st := runFollower(t, path, 64, 4000)
	got := KindCounts{
		New:     int64(st.ByKind[ingest.RowNew]),
		Renew:   int64(st.ByKind[ingest.RowExtend]),
		Release: int64(st.ByKind[ingest.RowRelease]),
		Expire:  int64(st.ByKind[ingest.RowExpire]),
	}
	if got != want || st.MalformedRows != 0 {
		t.Errorf("follower counted %+v (%d malformed), the churn made %+v", got, st.MalformedRows, want)
	}
}

// runFollower follows path until it has read rows rows and returns its
// stats; the store it fills is discarded.
func runFollower(t *testing.T, path string, links, rows int) ingest.FollowerStats {
	t.Helper()
	fake := newFakeStore()
	f, err := ingest.NewFollower(fake, ingest.FollowerConfig{Path: path, SubnetLinks: SubnetLinks(links), PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	waitFor(t, 10*time.Second, "the follower to read every row", func() bool { return f.Stats().RowsRead >= uint64(rows) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return f.Stats()
}

// TestKeaRotation rotates the lease file between writes and checks the
// files the cleanup leaves: a compacted Path.2 and the live file, with the
// same current leases as Kea would hold.
func TestKeaRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "leases6.csv")
	w, err := NewKeaWriter(KeaConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	c := newTestChurn(t, ChurnConfig{Seed: 4, Clients: 150, Stamp: StampRelay})
	current := make(map[string]string) // address -> last row, without removed leases
	write := func(n int) {
		changes := c.NextChanges(nil, n, fixedNow)
		if err := w.Write(context.Background(), changes); err != nil {
			t.Fatal(err)
		}
		for i := range changes {
			row := strings.TrimSuffix(string(AppendKeaRow(nil, &changes[i])), "\n")
			addr := changes[i].Binding.Prefix.Addr().String()
			if changes[i].Kind == ChangeRelease {
				delete(current, addr)
			} else {
				current[addr] = row
			}
		}
	}

	for round := range 3 {
		write(500)
		if err := w.Rotate(); err != nil {
			t.Fatal(err)
		}
		// Wait for the cleanup so that the next rotation is not skipped.
		waitFor(t, 10*time.Second, "the lease file cleanup", func() bool { return w.Stats().Compactions == uint64(round+1) })
	}
	write(300)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.Rotations != 3 || st.Compactions != 3 || st.Errors != 0 {
		t.Fatalf("stats %+v: want 3 rotations and cleanups without errors", st)
	}
	for _, gone := range []string{".1", ".pid", ".output", ".completed"} {
		if _, err := os.Stat(path + gone); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s remains after the cleanup: %v", path+gone, err)
		}
	}

	// The snapshot is in address order; snapshot plus live file replay to
	// the current leases.
	snapshot := readLines(t, path+".2")
	live := readLines(t, path)
	if snapshot[0] != KeaHeader || live[0] != KeaHeader || len(live) != 301 {
		t.Fatalf("snapshot header %q, live header %q with %d lines: want headers and 300 live rows", snapshot[0], live[0], len(live))
	}
	replayed, err := loadKeaLeases(path+".2", path)
	if err != nil {
		t.Fatal(err)
	}
	if len(replayed) != len(current) {
		t.Fatalf("the files hold %d leases, want %d", len(replayed), len(current))
	}
	for i, l := range replayed {
		if i > 0 && !replayed[i-1].addr.Less(l.addr) {
			t.Fatalf("leases out of address order at %v", l.addr)
		}
		if current[l.addr.String()] != l.row {
			t.Fatalf("%v: replayed row %q, want %q", l.addr, l.row, current[l.addr.String()])
		}
	}

	// The ingest follower loads the rotated files without a malformed row.
	st := runFollower(t, path, 64, len(snapshot)-1+300)
	if st.MalformedRows != 0 {
		t.Errorf("follower found %d malformed rows in the rotated files", st.MalformedRows)
	}
}

func TestKeaRotationSkippedWhileCleanupPending(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases6.csv")
	if err := os.WriteFile(path+".1", []byte(KeaHeader+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := NewKeaWriter(KeaConfig{Path: path, RotateInterval: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	c := newTestChurn(t, ChurnConfig{})
	if err := w.Write(context.Background(), c.NextChanges(nil, 10, fixedNow)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.Rotations != 0 {
		t.Errorf("%d rotations while %s.1 exists, want none", st.Rotations, path)
	}
	if lines := readLines(t, path); len(lines) != 11 {
		t.Errorf("live file has %d lines, want the header and 10 rows", len(lines))
	}
}

func TestKeaWriterAppendsToExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases6.csv")
	c := newTestChurn(t, ChurnConfig{})
	for range 2 {
		w, err := NewKeaWriter(KeaConfig{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(context.Background(), c.NextChanges(nil, 5, fixedNow)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	lines := readLines(t, path)
	if len(lines) != 11 || lines[0] != KeaHeader || strings.HasPrefix(lines[6], "address,") {
		t.Errorf("after two writers: %d lines; want one header and 10 rows", len(lines))
	}
}

func TestKeaWriterInvalid(t *testing.T) {
	for _, cfg := range []KeaConfig{{}, {Path: "x", RotateInterval: -1}} {
		if _, err := NewKeaWriter(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewKeaWriter(%+v) = %v, want ErrInvalidConfig", cfg, err)
		}
	}
	if _, err := NewKeaWriter(KeaConfig{Path: filepath.Join(t.TempDir(), "missing", "leases6.csv")}); err == nil {
		t.Error("NewKeaWriter in a missing directory succeeded")
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}
