package store

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The crash test re-executes the test binary as a child that applies
// changes until the parent kills it with SIGKILL. The child reports on file
// descriptor 3:
//
//	c <seq> <key> <iaid> <state>     a committed change (sent by a subscriber,
//	                                 so only after its WAL sync returned)
//	a <writer> <counter> <lastSeq>   an Apply call that returned, whose
//	                                 metadata "pos-<writer>" was <counter>
//
// After each kill the parent reopens the store and checks that every
// reported change and acknowledged call survived and that Verify passes.
const (
	crashChildDirEnv   = "ALQD_STORE_CRASH_DIR"
	crashChildStartEnv = "ALQD_STORE_CRASH_START"

	crashRounds  = 25
	crashWriters = 4
	crashKeys    = 400 // keys below 300 are IA_NA, the rest IA_PD

	// crashClockSpeed makes the child's clock run this many times faster
	// than real time, so that the 5 s retention ends within a round and the
	// background trim removes tombstones while the child may be killed.
	crashClockSpeed = 20
)

// crashKey returns the binding key of crash-test key number k.
func crashKey(k int) Key {
	if k < 300 {
		return Key{Type: TypeNA, Prefix: netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(k >> 8), 15: byte(k)}), 128)}
	}
	bits := []int{48, 56, 64}[k%3]
	addr := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(k >> 8), byte(k)})
	return Key{Type: TypePD, Prefix: netip.PrefixFrom(addr, bits)}
}

// crashKeyIndex is the inverse of crashKey.
func crashKeyIndex(k Key) int {
	a := k.Prefix.Addr().As16()
	if k.Type == TypeNA {
		return int(a[14])<<8 | int(a[15])
	}
	return int(a[4])<<8 | int(a[5])
}

// runCrashChild is the child's main function. It returns only on a failure;
// the parent ends it with SIGKILL.
func runCrashChild(dir string) int {
	out := os.NewFile(3, "reports")
	startNs, err := strconv.ParseInt(os.Getenv(crashChildStartEnv), 10, 64)
	if err != nil {
		fmt.Fprintf(os.Stderr, "crash child: invalid %s: %v\n", crashChildStartEnv, err)
		return 2
	}
	start := time.Unix(0, startNs)
	clock := func() time.Time { return start.Add(time.Since(start) * crashClockSpeed) }

	s, err := Open(dir, Options{Clock: clock, Retention: 5 * time.Second, TrimInterval: 20 * time.Millisecond, MaxGroupChanges: 64})
	if err != nil {
		fmt.Fprintf(os.Stderr, "crash child: %v\n", err)
		return 2
	}
	s.Subscribe(func(committed []Binding) {
		var buf []byte
		for _, b := range committed {
			buf = fmt.Appendf(buf, "c %d %d %d %d\n", b.Seq, crashKeyIndex(b.Key), b.IAID, b.State)
		}
		_, _ = out.Write(buf)
	})

	failures := make(chan error, crashWriters)
	for w := range crashWriters {
		go func() { failures <- crashWriter(s, out, w) }()
	}
	err = <-failures
	fmt.Fprintf(os.Stderr, "crash child: %v\n", err)
	return 2
}

// crashWriter applies random changes to the keys k with k%crashWriters ==
// w, so that each key has one writer and its changes commit in call order.
func crashWriter(s *Store, out *os.File, w int) error {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
	links := []string{"2001:db8:a::1", "2001:db8:b::1", ""}
	// Go on from the stored position, as an ingest follower does.
	metaKey := fmt.Sprintf("pos-%d", w)
	pos, err := s.Meta(metaKey)
	if err != nil {
		return err
	}
	counter, _ := strconv.Atoi(string(pos))
	for {
		counter++
		changes := make([]Binding, 1+rng.IntN(16))
		for i := range changes {
			k := rng.IntN(crashKeys/crashWriters)*crashWriters + w
			b := na("::", fmt.Sprintf("client-%d", rng.IntN(5)), links[rng.IntN(len(links))])
			b.Key = crashKey(k)
			b.IAID = rng.Uint32()
			if n := rng.IntN(4); n > 0 {
				b.RelayID = []byte(fmt.Sprintf("relay-%d", n))
			}
			if n := rng.IntN(4); n > 0 {
				b.RemoteID = []byte(fmt.Sprintf("remote-%d", n))
			}
			switch n := rng.IntN(20); {
			case n < 3:
				b = released(b)
			case n < 5:
				b.State = StateExpired
			case n < 6:
				b.State = StateDeclined
			}
			changes[i] = b
		}
		meta := map[string][]byte{metaKey: []byte(strconv.Itoa(counter))}
		lastSeq, err := s.Apply(context.Background(), changes, meta)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(out, "a %d %d %d\n", w, counter, lastSeq); err != nil {
			return err
		}
	}
}

// crashReport is one committed change the child reported.
type crashReport struct {
	seq   uint64
	iaid  uint32
	state State
}

// crashModel holds what the children reported, all of which must be durable.
type crashModel struct {
	latest  map[int]crashReport // per key, the reported change with the highest seq
	maxSeq  uint64              // highest seq reported or acknowledged
	pos     [crashWriters]int   // per writer, the highest acknowledged counter
	commits int
	acks    int
}

// parse adds one report line; a line cut by the kill is ignored.
func (m *crashModel) parse(line string) {
	var kind string
	var a, b, c, d uint64
	if n, _ := fmt.Sscanf(line, "c %d %d %d %d", &a, &b, &c, &d); n == 4 {
		kind = "c"
	} else if n, _ := fmt.Sscanf(line, "a %d %d %d", &a, &b, &c); n == 3 {
		kind = "a"
	}
	switch kind {
	case "c":
		if prev, ok := m.latest[int(b)]; !ok || a > prev.seq {
			m.latest[int(b)] = crashReport{seq: a, iaid: uint32(c), state: State(d)}
		}
		m.maxSeq = max(m.maxSeq, a)
		m.commits++
	case "a":
		m.pos[a] = max(m.pos[a], int(b))
		m.maxSeq = max(m.maxSeq, c)
		m.acks++
	}
}

func TestCrashRecovery(t *testing.T) {
	dir := t.TempDir()
	model := &crashModel{latest: map[int]crashReport{}}
	start := strconv.FormatInt(time.Now().UnixNano(), 10)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	trimmedRounds := 0

	for round := range crashRounds {
		lines, stderr := runAndKillChild(t, dir, start, 100*time.Millisecond+time.Duration(rng.Int64N(int64(500*time.Millisecond))))
		if strings.Contains(stderr, "DATA RACE") {
			t.Fatalf("round %d: the race detector reported in the child:\n%s", round, stderr)
		}
		for _, line := range lines {
			model.parse(line)
		}
		if checkCrashState(t, dir, model, round, stderr) {
			trimmedRounds++
		}
	}

	t.Logf("%d rounds: %d committed changes and %d Apply calls reported; the floor moved in %d rounds",
		crashRounds, model.commits, model.acks, trimmedRounds)
	if model.acks < crashRounds || model.commits < crashRounds {
		t.Errorf("the children reported %d changes and %d Apply calls in %d rounds; the test did not exercise the store", model.commits, model.acks, crashRounds)
	}
	if trimmedRounds == 0 {
		t.Error("no round raised the floor; the test did not exercise trimming")
	}
}

// runAndKillChild starts a child on dir, kills it with SIGKILL after
// lifetime and returns the report lines it wrote and its standard error.
func runAndKillChild(t *testing.T, dir, start string, lifetime time.Duration) ([]string, string) {
	t.Helper()
	reports, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer reports.Close()
	var stderr bytes.Buffer
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildDirEnv+"="+dir, crashChildStartEnv+"="+start)
	cmd.ExtraFiles = []*os.File{w}
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()

	var lines []string
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(reports)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
	}()

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		wg.Wait()
		t.Fatalf("the child exited by itself (%v) before the kill:\n%s", err, stderr.String())
	case <-time.After(lifetime):
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	wg.Wait()
	return lines, stderr.String()
}

// checkCrashState reopens the store and checks it against the model. It
// reports whether the floor is above zero.
func checkCrashState(t *testing.T, dir string, model *crashModel, round int, childStderr string) bool {
	t.Helper()
	s, err := Open(dir, Options{TrimInterval: -1})
	if err != nil {
		t.Fatalf("round %d: reopen after the kill: %v\nchild stderr:\n%s", round, err, childStderr)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("round %d: Close: %v", round, err)
		}
	}()

	if err := s.Verify(); err != nil {
		t.Fatalf("round %d: Verify after the kill: %v", round, err)
	}
	if s.LastSeq() < model.maxSeq {
		t.Fatalf("round %d: LastSeq %d is below the reported seq %d", round, s.LastSeq(), model.maxSeq)
	}
	_, floorSeq := s.Floor()
	for k, rep := range model.latest {
		b, ok, err := s.Get(crashKey(k))
		switch {
		case err != nil:
			t.Fatalf("round %d: Get key %d: %v", round, k, err)
		case !ok && floorSeq < rep.seq:
			t.Fatalf("round %d: key %d is missing, but its change at seq %d is above the floor seq %d", round, k, rep.seq, floorSeq)
		case ok && b.Seq < rep.seq:
			t.Fatalf("round %d: key %d has seq %d, older than the reported seq %d", round, k, b.Seq, rep.seq)
		case ok && b.Seq == rep.seq && (b.IAID != rep.iaid || b.State != rep.state):
			t.Fatalf("round %d: key %d at seq %d has IAID %d, %s; reported %d, %s", round, k, b.Seq, b.IAID, b.State, rep.iaid, rep.state)
		}
	}
	for w, counter := range model.pos {
		v, err := s.Meta(fmt.Sprintf("pos-%d", w))
		if err != nil {
			t.Fatal(err)
		}
		stored, _ := strconv.Atoi(string(v))
		if stored < counter {
			t.Fatalf("round %d: metadata pos-%d = %q, below the acknowledged %d", round, w, v, counter)
		}
	}
	return floorSeq > 0
}
