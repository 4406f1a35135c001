package keatest

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests need root and Kea; see Require.

// TestHarnessEndToEnd drives direct and relayed perfdhcp traffic through Kea
// with a short LFC interval and checks that the lease file, the control
// socket and the relay shim agree.
func TestHarnessEndToEnd(t *testing.T) {
	env := Start(t, Config{LFCInterval: 2 * time.Second})
	startInode := inode(t, env.Kea.LeaseFile())

	// Direct and relayed clients at the same time, a few seconds each.
	direct := Load{Rate: 100, RenewRate: 20, ReleaseRate: 10, Clients: 300, Duration: 5 * time.Second}
	relayed := Load{Relayed: true, Rate: 30, RenewRate: 6, ReleaseRate: 3, Clients: 100, Duration: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	results, err := env.RunAll(ctx, direct, relayed)
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"direct", "relayed"} {
		replies := results[i].Exchanges["REQUEST-REPLY"].Received
		if replies == 0 {
			t.Errorf("%s perfdhcp run received no Reply to Request:\n%s", name, results[i].Output)
		}
	}
	if env.Shim.Forwarded() == 0 || env.Shim.Replied() == 0 {
		t.Errorf("relay shim forwarded %d Relay-forward and %d Relay-reply messages, want both > 0 (dropped %d)",
			env.Shim.Forwarded(), env.Shim.Replied(), env.Shim.Dropped())
	}

	// Read the lease files and Kea's leases at a moment when no LFC runs.
	files, leases := consistentSnapshot(t, env.Kea)
	if files.rows == 0 {
		t.Fatal("the lease files hold no rows after the traffic")
	}
	if files.liveInode == startInode {
		t.Errorf("the live lease file still has inode %d, so no LFC rotation happened", startInode)
	}
	if !files.hadSnapshot {
		t.Errorf("%s.2 does not exist, so no LFC completed", env.Kea.LeaseFile())
	}

	t.Logf("lease files: %d rows, %d current leases; lease6-get-all: %d leases; relay shim: %d forwarded, %d replied",
		files.rows, len(files.state), len(leases), env.Shim.Forwarded(), env.Shim.Replied())
	checkLeasesMatchFile(t, leases, files.state)
	checkRelayInfo(t, leases, files.state)
}

// TestTopologyRemovesLeftovers creates the namespaces a crashed run would
// have left, one of an exited process and one with the very name the next
// topology uses, and checks that NewTopology removes both.
func TestTopologyRemovesLeftovers(t *testing.T) {
	Require(t)
	ipPath, err := findTool("ip")
	if err != nil {
		t.Fatal(err)
	}

	// No process can have ID 2^31-1: pid_max is at most 2^22.
	stale := namespacePrefix + "srv-2147483647-1"
	sameName := fmt.Sprintf("%scli-%d-%d", namespacePrefix, os.Getpid(), topologySeq.Load()+1)
	for _, ns := range []string{stale, sameName} {
		if _, err := runIP(ipPath, "netns", "add", ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if namespaceExists(ns) {
				_, _ = runIP(ipPath, "netns", "del", ns)
			}
		})
	}

	topo := NewTopology(t)

	if namespaceExists(stale) {
		t.Errorf("namespace %s of an exited process still exists", stale)
	}
	if topo.ClientNamespace != sameName {
		t.Fatalf("the topology uses client namespace %s, want %s", topo.ClientNamespace, sameName)
	}
	out, err := runIP(ipPath, "-n", sameName, "addr", "show", "dev", ClientInterface)
	if err != nil {
		t.Fatalf("the recreated client namespace has no %s: %v", ClientInterface, err)
	}
	if !strings.Contains(out, ClientAddr.String()) {
		t.Errorf("the recreated client namespace lacks %v:\n%s", ClientAddr, out)
	}
}

// TestKeaControlCommands checks the control socket client against Kea:
// an empty lease list, then a lease added with lease6-add, found, deleted
// with DeleteLease, and the deletion row in the lease file.
func TestKeaControlCommands(t *testing.T) {
	topo := NewTopology(t)
	kea := StartKea(t, topo, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	leases, err := kea.Control().Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != 0 {
		t.Fatalf("a fresh Kea returned %d leases, want 0", len(leases))
	}

	prefix := netip.MustParseAddr("2001:db8:8000:100::")
	add := map[string]any{
		"subnet-id":  1,
		"ip-address": prefix.String(),
		"type":       "IA_PD",
		"prefix-len": 56,
		"duid":       "00:03:00:01:02:00:00:00:00:07",
		"iaid":       7,
		"valid-lft":  30,
	}
	if _, err := kea.Control().Command(ctx, "lease6-add", add); err != nil {
		t.Fatal(err)
	}
	leases, err = kea.Control().Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != 1 {
		t.Fatalf("Kea returned %d leases after lease6-add, want 1", len(leases))
	}
	got := leases[0]
	if got.Type != TypePD || got.Prefix() != netip.PrefixFrom(prefix, 56) || got.IAID != 7 || got.ValidLifetime != 30 {
		t.Errorf("added lease reads back as %+v", got)
	}
	if want := []byte{0, 3, 0, 1, 2, 0, 0, 0, 0, 7}; !bytes.Equal(got.DUID, want) {
		t.Errorf("added lease has DUID %x, want %x", got.DUID, want)
	}

	if err := kea.Control().DeleteLease(ctx, TypePD, prefix); err != nil {
		t.Fatal(err)
	}
	leases, err = kea.Control().Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != 0 {
		t.Errorf("Kea returned %d leases after lease6-del, want 0", len(leases))
	}
	if err := kea.Control().ReclaimExpired(ctx, false); err != nil {
		t.Error(err)
	}
	if _, err := kea.Control().Command(ctx, "no-such-command", nil); err == nil {
		t.Error("an unknown command returned no error")
	}

	// The add and the delete are two rows; the delete has valid lifetime 0.
	rows := readLeaseRows(t, kea.LeaseFile())
	if len(rows) != 2 {
		t.Fatalf("lease file has %d rows, want 2 (add and delete)", len(rows))
	}
	if rows[1]["address"] != prefix.String() || rows[1]["valid_lifetime"] != "0" {
		t.Errorf("last lease file row is %v, want a deletion row for %v", rows[1], prefix)
	}
}

// TestMeasureRowRate checks that a bounded direct run writes rows and gives a
// positive rate. It asserts no particular speed.
func TestMeasureRowRate(t *testing.T) {
	env := Start(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	rate, err := MeasureRowRate(ctx, env, Load{Rate: 200, RenewRate: 40, ReleaseRate: 20, Clients: 100000, Duration: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if rate.Rows <= 0 || rate.Elapsed <= 0 || rate.PerSecond() <= 0 {
		t.Fatalf("measured %d rows in %v, want both positive", rate.Rows, rate.Elapsed)
	}
	t.Logf("Kea wrote %d lease rows in %v: %.0f rows/s", rate.Rows, rate.Elapsed, rate.PerSecond())
}

// BenchmarkKeaLeaseRowRate measures how many lease rows per second Kea's
// memfile backend writes under direct IA_NA+IA_PD load, as a baseline for
// alqd's ingest. Each iteration is a 3 s perfdhcp run. The offered load is
// two rows per Reply: at rate=1000 it is 2,600 rows/s, which Kea normally
// sustains, and at rate=4000 it is 10,400 rows/s, which saturates it on two
// cores.
func BenchmarkKeaLeaseRowRate(b *testing.B) {
	// Long lifetimes keep expiry rows out of the measurement. 50,000 clients
	// stay below the 61,440 addresses of the direct pool over many runs.
	env := Start(b, Config{
		ValidLifetime:     300 * time.Second,
		PreferredLifetime: 200 * time.Second,
		RenewTimer:        100 * time.Second,
		RebindTimer:       160 * time.Second,
	})
	ctx := context.Background()

	for _, rate := range []int{1000, 4000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			load := Load{Rate: rate, RenewRate: rate / 5, ReleaseRate: rate / 10, Clients: 50000, Duration: 3 * time.Second}
			b.ReportAllocs()
			var total RowRate
			for range b.N {
				rate, err := MeasureRowRate(ctx, env, load)
				if err != nil {
					b.Fatal(err)
				}
				total.Rows += rate.Rows
				total.Elapsed += rate.Elapsed
			}
			b.ReportMetric(total.PerSecond(), "rows/s")
		})
	}
}

// leaseFiles is Kea's lease state as the lease files give it.
type leaseFiles struct {
	rows        int                            // rows read from all files
	state       map[leaseKey]map[string]string // last row per lease, deleted leases removed
	liveInode   uint64                         // inode of the live file
	hadSnapshot bool                           // whether the compacted .2 file existed
}

type leaseKey struct {
	typ  string // lease_type column
	addr string
}

// consistentSnapshot reads the lease files and lease6-get-all, retrying
// until no LFC ran and the live file did not grow in between.
func consistentSnapshot(t *testing.T, kea *Kea) (leaseFiles, []Lease) {
	t.Helper()
	live := kea.LeaseFile()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		busy := fileExists(live+".1") || fileExists(live+".pid") || fileExists(live+".completed")
		if !busy && fileExists(live+".2") {
			before := statFile(t, live)
			files := replayLeaseFiles(t, live+".2", live)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			leases, err := kea.Control().Leases(ctx)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			after := statFile(t, live)
			if before == after && !fileExists(live+".1") {
				files.liveInode = before.inode
				files.hadSnapshot = true
				return files, leases
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("found no moment without LFC and without lease file growth within 30 s")
	return leaseFiles{}, nil
}

type fileStat struct {
	inode uint64
	size  int64
}

func statFile(t *testing.T, path string) fileStat {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fileStat{inode: info.Sys().(*syscall.Stat_t).Ino, size: info.Size()}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	return statFile(t, path).inode
}

// replayLeaseFiles applies the rows of the files in order: the last row of a
// lease wins, and a row with valid lifetime 0 deletes it.
func replayLeaseFiles(t *testing.T, paths ...string) leaseFiles {
	t.Helper()
	files := leaseFiles{state: make(map[leaseKey]map[string]string)}
	for _, path := range paths {
		for _, row := range readLeaseRows(t, path) {
			files.rows++
			key := leaseKey{typ: row["lease_type"], addr: row["address"]}
			if row["valid_lifetime"] == "0" {
				delete(files.state, key)
				continue
			}
			files.state[key] = row
		}
	}
	return files
}

// readLeaseRows parses a Kea memfile lease file into rows keyed by the
// header's column names, reading complete lines only.
func readLeaseRows(t *testing.T, path string) []map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i]
	}
	lines := strings.Split(string(data), "\n")
	header := strings.Split(lines[0], ",")
	if header[0] != "address" {
		t.Fatalf("%s starts with %q, not the lease file header", path, lines[0])
	}
	var rows []map[string]string
	for n, line := range lines[1:] {
		fields := strings.Split(line, ",")
		if len(fields) != len(header) {
			t.Fatalf("%s line %d has %d fields, want %d: %s", filepath.Base(path), n+2, len(fields), len(header), line)
		}
		row := make(map[string]string, len(header))
		for i, name := range header {
			row[name] = unescapeLeaseField(fields[i])
		}
		rows = append(rows, row)
	}
	return rows
}

var escapedByte = regexp.MustCompile(`&#x([0-9a-fA-F]{2})`)

// unescapeLeaseField undoes Kea's escaping of "," and "&" as "&#xHH".
func unescapeLeaseField(s string) string {
	return escapedByte.ReplaceAllStringFunc(s, func(m string) string {
		b, _ := strconv.ParseUint(m[3:], 16, 8)
		return string(rune(b))
	})
}

// checkLeasesMatchFile compares lease6-get-all with the lease file state.
func checkLeasesMatchFile(t *testing.T, leases []Lease, state map[leaseKey]map[string]string) {
	t.Helper()
	if len(leases) != len(state) {
		t.Errorf("lease6-get-all returned %d leases, the lease files hold %d", len(leases), len(state))
	}
	var types [3]int
	for _, l := range leases {
		types[l.Type]++
		row, ok := state[leaseKey{typ: strconv.Itoa(int(l.Type)), addr: l.Address.String()}]
		if !ok {
			t.Errorf("lease %v %v from lease6-get-all is not in the lease files", l.Type, l.Prefix())
			continue
		}
		duid, err := hexBytes(row["duid"])
		if err != nil {
			t.Fatal(err)
		}
		expire, _ := strconv.ParseInt(row["expire"], 10, 64)
		want := fmt.Sprintf("duid=%x iaid=%s valid=%s cltt=%d state=%s prefix_len=%s", duid, row["iaid"], row["valid_lifetime"],
			expire-mustAtoi(t, row["valid_lifetime"]), row["state"], row["prefix_len"])
		got := fmt.Sprintf("duid=%x iaid=%d valid=%d cltt=%d state=%d prefix_len=%d", l.DUID, l.IAID, l.ValidLifetime,
			l.CLTT, l.State, l.PrefixLen)
		if got != want {
			t.Errorf("lease %v: lease6-get-all has %s, the lease file has %s", l.Prefix(), got, want)
		}
	}
	if types[TypeNA] == 0 || types[TypePD] == 0 {
		t.Errorf("got %d IA_NA and %d IA_PD leases, want both > 0", types[TypeNA], types[TypePD])
	}
}

// checkRelayInfo checks that relayed leases carry the shim's options, in
// lease6-get-all and in the lease file, and that direct leases carry none.
func checkRelayInfo(t *testing.T, leases []Lease, state map[leaseKey]map[string]string) {
	t.Helper()
	links, err := RelayLinks()
	if err != nil {
		t.Fatal(err)
	}
	seenLinks := make(map[netip.Addr]int)
	for _, l := range leases {
		if l.SubnetID == 1 {
			if len(l.Relays) != 0 {
				t.Errorf("direct lease %v has relay information %+v", l.Prefix(), l.Relays)
			}
			continue
		}
		if len(l.Relays) != 1 {
			t.Errorf("relayed lease %v in subnet %d has %d relays, want 1", l.Prefix(), l.SubnetID, len(l.Relays))
			continue
		}
		r := l.Relays[0]
		seenLinks[r.Link]++
		if !slices.Contains(links, r.Link) || r.Peer != ClientAddr {
			t.Errorf("relayed lease %v has link %v and peer %v, want a link of %v and peer %v", l.Prefix(), r.Link, r.Peer, links, ClientAddr)
		}
		if !bytes.Equal(r.RemoteID, RemoteID(l.DUID)) || !bytes.Equal(r.RelayID, RelayID(r.Link)) || !bytes.Equal(r.InterfaceID, InterfaceID(r.Link)) {
			t.Errorf("relayed lease %v has remote-id %q relay-id %x interface-id %q, want %q %x %q", l.Prefix(),
				r.RemoteID, r.RelayID, r.InterfaceID, RemoteID(l.DUID), RelayID(r.Link), InterfaceID(r.Link))
		}

		row := state[leaseKey{typ: strconv.Itoa(int(l.Type)), addr: l.Address.String()}]
		fileRelays, err := ParseUserContext([]byte(row["user_context"]))
		if err != nil {
			t.Errorf("lease %v: user_context of the lease file: %v", l.Prefix(), err)
			continue
		}
		if len(fileRelays) != 1 || !bytes.Equal(fileRelays[0].Options, r.Options) {
			t.Errorf("lease %v: the lease file has relays %+v, lease6-get-all has %+v", l.Prefix(), fileRelays, l.Relays)
		}
	}
	for _, link := range links {
		if seenLinks[link] == 0 {
			t.Errorf("no relayed lease came through link %v", link)
		}
	}
}

func mustAtoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
