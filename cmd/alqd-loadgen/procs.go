package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/alqd/alqd/loadgen"
)

// childProgressPrefix starts the progress lines a child process writes on
// stderr, each followed by a loadgen.SwarmProgress in JSON.
const childProgressPrefix = "progress "

// child is one process of a swarm split by --procs.
type child struct {
	index    int
	cmd      *exec.Cmd
	stdout   bytes.Buffer
	mu       sync.Mutex
	progress loadgen.SwarmProgress
	done     chan struct{} // closed when its stderr has been read to the end
}

// runParent runs the swarm as f.procs child processes of this program,
// each with its share of the connections, of --count and of --dial-rate,
// and prints the merged summary.
func runParent(ctx context.Context, fs *flag.FlagSet, f *swarmFlags, stdout, stderr io.Writer) int {
	exe, err := os.Executable()
	if err != nil {
		return usageError(stderr, "swarm", fmt.Errorf("finding this program to run --procs children: %w", err))
	}

	// The children get every flag given here except those the parent
	// divides or sets itself.
	var common []string
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "procs", "count", "dial-rate", "child-range", "quiet", "raw":
			return
		}
		common = append(common, "-"+fl.Name+"="+fl.Value.String())
	})
	n, k := f.cfg.Connections, f.procs
	children := make([]*child, k)
	for i := range children {
		first, last := i*n/k, (i+1)*n/k
		args := append([]string{"swarm"}, common...)
		args = append(args,
			"-procs=1",
			fmt.Sprintf("-child-range=%d:%d", first, last-first),
			fmt.Sprintf("-count=%d", int64(math.Ceil(float64(f.cfg.Count)/float64(k)))),
			fmt.Sprintf("-dial-rate=%g", f.cfg.DialRate/float64(k)),
		)
		c := &child{index: i, cmd: exec.Command(exe, args...), done: make(chan struct{})}
		c.cmd.Stdout = &c.stdout
		children[i] = c
	}

	// Start every child and follow its stderr.
	var started []*child
	for _, c := range children {
		pipe, err := c.cmd.StderrPipe()
		if err == nil {
			err = c.cmd.Start()
		}
		if err != nil {
			fmt.Fprintf(stderr, "alqd-loadgen swarm: starting process %d failed: %v\n", c.index, err)
			stopChildren(started)
			waitChildren(started)
			return exitFailed
		}
		started = append(started, c)
		go c.follow(pipe, stderr)
	}
	stopOnCancel := context.AfterFunc(ctx, func() { stopChildren(children) })
	defer stopOnCancel()

	allDone := make(chan struct{})
	go func() {
		waitChildren(children)
		close(allDone)
	}()
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for waiting := true; waiting; {
		select {
		case <-allDone:
			waiting = false
		case <-ticker.C:
			if !f.quiet {
				fmt.Fprintln(stderr, combinedProgressLine(children, n))
			}
		}
	}
	return mergeChildren(children, f.raw, stdout, stderr)
}

// follow reads a child's stderr: it keeps the progress lines and passes
// the others on with the child's number.
func (c *child) follow(r io.Reader, stderr io.Writer) {
	defer close(c.done)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, childProgressPrefix); ok {
			var p loadgen.SwarmProgress
			if json.Unmarshal([]byte(rest), &p) == nil {
				c.mu.Lock()
				c.progress = p
				c.mu.Unlock()
				continue
			}
		}
		fmt.Fprintf(stderr, "[process %d] %s\n", c.index, line)
	}
}

// stopChildren sends SIGINT to every started child, which ends its run
// early; each still prints its summary.
func stopChildren(children []*child) {
	for _, c := range children {
		if c.cmd.Process != nil {
			_ = c.cmd.Process.Signal(os.Interrupt) // an error means it has exited: nothing to stop
		}
	}
}

// waitChildren waits for every child to exit and its stderr to be read.
// Exec's Wait must come after the pipe is drained.
func waitChildren(children []*child) {
	for _, c := range children {
		<-c.done
		_ = c.cmd.Wait() // the exit status is judged from the summary
	}
}

func combinedProgressLine(children []*child, connections int) string {
	var sum loadgen.SwarmProgress
	for _, c := range children {
		c.mu.Lock()
		p := c.progress
		c.mu.Unlock()
		sum.Elapsed = max(sum.Elapsed, p.Elapsed)
		sum.Established += p.Established
		sum.Messages += p.Messages
		sum.Updates += p.Updates
		sum.Bytes += p.Bytes
		sum.DecodeFailures += p.DecodeFailures
		sum.Errors += p.Errors
		// Percentiles do not add up; show the worst process.
		sum.Latency.Count += p.Latency.Count
		sum.Latency.P50 = max(sum.Latency.P50, p.Latency.P50)
		sum.Latency.P99 = max(sum.Latency.P99, p.Latency.P99)
	}
	return swarmProgressLine(sum, connections) + fmt.Sprintf(" (%d processes, latency of the slowest)", len(children))
}

// mergeChildren merges the children's summaries and prints the result.
func mergeChildren(children []*child, raw bool, stdout, stderr io.Writer) int {
	var parts []*loadgen.SwarmSummary
	missing := 0
	for _, c := range children {
		var s loadgen.SwarmSummary
		if err := json.Unmarshal(c.stdout.Bytes(), &s); err != nil {
			fmt.Fprintf(stderr, "alqd-loadgen swarm: process %d printed no summary (%v): %v\n", c.index, c.cmd.ProcessState, err)
			missing++
			continue
		}
		parts = append(parts, &s)
	}
	if len(parts) == 0 {
		return exitFailed
	}
	merged, err := loadgen.MergeSwarmSummaries(parts)
	if err != nil {
		fmt.Fprintf(stderr, "alqd-loadgen swarm: %v\n", err)
		return exitFailed
	}
	if !raw {
		merged.LatencyHistogram, merged.Results = "", nil
	}
	if err := writeJSON(stdout, merged); err != nil {
		fmt.Fprintf(stderr, "alqd-loadgen swarm: writing the summary failed: %v\n", err)
		return exitFailed
	}
	if missing > 0 || merged.Failed() {
		if merged.FirstError != "" {
			fmt.Fprintf(stderr, "alqd-loadgen swarm: %d errors, the first: %s\n", merged.Errors, merged.FirstError)
		}
		return exitFailed
	}
	return exitOK
}
