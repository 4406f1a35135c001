package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// pipeChildEnv makes the test binary a child that writes lines to
// standard output until stopSignals' context ends, then writes the cause to
// standard error and exits 0.
const pipeChildEnv = "ALQD_RUN_PIPE_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(pipeChildEnv) != "" {
		ctx, stop := stopSignals()
		defer stop()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		for ctx.Err() == nil {
			fmt.Println(`{"event":"binding"}`)
			time.Sleep(time.Millisecond)
		}
		fmt.Fprintln(os.Stderr, "stopped:", context.Cause(ctx))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestStopOnClosedStdout closes the read end of a child's standard output,
// as "make run | head -3" does. The child must see its context end and stop
// by itself, not die of SIGPIPE before it could stop what it started.
func TestStopOnClosedStdout(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), pipeChildEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(stdout).ReadString('\n'); err != nil {
		t.Fatalf("reading the child's first line: %v", err)
	}
	stdout.Close()
	err = cmd.Wait()
	if err != nil {
		t.Fatalf("child ended with %v (stderr %q), want a clean stop", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "stopped: broken pipe") {
		t.Errorf("child stderr %q, want it to report the broken pipe", stderr.String())
	}
}
