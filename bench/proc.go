package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat: Linux reports
// them in USER_HZ ticks, which is 100 on every architecture Go supports.
const userHZ = 100

// raiseFileLimit raises RLIMIT_NOFILE to its hard limit and returns the new
// soft limit. Connection counts are sized from it.
func raiseFileLimit() (uint64, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("bench: reading RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("bench: raising RLIMIT_NOFILE to %d: %w", lim.Max, err)
		}
	}
	return lim.Cur, nil
}

// procCPU returns the user plus system CPU time that process pid has used.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces and parentheses, so the
	// fields are counted from the last ')'.
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return 0, fmt.Errorf("bench: /proc/%d/stat has no command field", pid)
	}
	fields := strings.Fields(string(b[end+1:]))
	// After the command: state is field 3, utime 14, stime 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("bench: /proc/%d/stat has %d fields after the command, want at least 13", pid, len(fields))
	}
	var ticks uint64
	for _, f := range fields[11:13] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: /proc/%d/stat: %w", pid, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// procRSS returns VmRSS of process pid in bytes.
func procRSS(pid int) (int64, error) {
	path := "/proc/self/status"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "VmRSS:") {
			continue
		}
		fields := strings.Fields(line[len("VmRSS:"):])
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("bench: %s: unexpected VmRSS line %q", path, line)
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: %s: %w", path, err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("bench: %s has no VmRSS line", path)
}

// memSample is the memory of one process at one moment.
type memSample struct {
	RSS        int64 `json:"rss"`        // VmRSS, bytes
	Heap       int64 `json:"heap"`       // Go heap objects, bytes
	Stacks     int64 `json:"stacks"`     // goroutine stacks, bytes
	Goroutines int64 `json:"goroutines"` // live goroutines
}

// sampleMemory reads the memory of this process. With settle set it first
// collects garbage and returns freed pages to the kernel, so that two
// samples differ by live memory only.
func sampleMemory(settle bool) (memSample, error) {
	if settle {
		runtime.GC()
		debug.FreeOSMemory()
	}
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/stacks:bytes"},
		{Name: "/sched/goroutines:goroutines"},
	}
	metrics.Read(samples)
	rss, err := procRSS(0)
	if err != nil {
		return memSample{}, err
	}
	return memSample{
		RSS:        rss,
		Heap:       int64(samples[0].Value.Uint64()),
		Stacks:     int64(samples[1].Value.Uint64()),
		Goroutines: int64(samples[2].Value.Uint64()),
	}, nil
}

// Machine describes the host a run measured.
type Machine struct {
	CPUs      int    // logical CPUs (nproc)
	CPUModel  string // "model name" of /proc/cpuinfo
	MemTotal  int64  // bytes, from /proc/meminfo
	Kernel    string // uname -sr
	GoVersion string
}

// readMachine describes this host; fields it cannot read stay empty.
func readMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				fields := strings.Fields(rest)
				if len(fields) == 2 {
					if kb, err := strconv.ParseInt(fields[0], 10, 64); err == nil {
						m.MemTotal = kb << 10
					}
				}
			}
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:])
	}
	return m
}
