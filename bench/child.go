package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// ChildEnv is the environment variable that turns a process into a harness
// child: the orchestrator starts its own executable with ChildEnv set to a
// role ("server" or "client"). A main function, and the TestMain of a
// package that runs the harness, must call RunChild when ChildRole returns a
// role, before doing anything else.
const ChildEnv = "ALQD_BENCH_CHILD"

// childLifetime bounds every child process: whatever the orchestrator does,
// a child exits after this long, so no load outlives a run.
const childLifetime = 30 * time.Minute

// ChildRole returns the role this process was started in, or "" for the
// orchestrator.
func ChildRole() string { return os.Getenv(ChildEnv) }

// request is one line the orchestrator writes to a child's stdin.
type request struct {
	Op   string          `json:"op"`
	Args json.RawMessage `json:"args,omitempty"`
}

// response is the one line a child writes to its stdout per request.
type response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// childOp runs one request inside a child and returns its JSON result.
type childOp func(args json.RawMessage) (any, error)

// RunChild serves the requests of the orchestrator on stdin and stdout in
// the given role until stdin ends, and returns the process exit code. A
// child also exits after childLifetime.
func RunChild(role string) int {
	if _, err := raiseFileLimit(); err != nil {
		fmt.Fprintf(os.Stderr, "alqd-bench %s child: %v\n", role, err)
	}
	var ops map[string]childOp
	var closer func()
	switch role {
	case "server":
		s := &serverChild{}
		ops, closer = s.ops(), s.close
	case "client":
		c := &clientChild{}
		ops, closer = c.ops(), c.close
	default:
		fmt.Fprintf(os.Stderr, "alqd-bench: unknown child role %q in %s\n", role, ChildEnv)
		return 2
	}
	time.AfterFunc(childLifetime, func() {
		fmt.Fprintf(os.Stderr, "alqd-bench %s child: exiting after the %v lifetime limit\n", role, childLifetime)
		os.Exit(3)
	})
	defer closer()
	return serveChild(os.Stdin, os.Stdout, ops)
}

// serveChild answers requests read from in until it ends.
func serveChild(in io.Reader, out io.Writer, ops map[string]childOp) int {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	enc := json.NewEncoder(out)
	for sc.Scan() {
		var req request
		var resp response
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			resp.Error = fmt.Sprintf("invalid request line: %v", err)
		} else if op, ok := ops[req.Op]; !ok {
			resp.Error = fmt.Sprintf("unknown operation %q", req.Op)
		} else if result, err := op(req.Args); err != nil {
			resp.Error = err.Error()
		} else if resp.Result, err = json.Marshal(result); err != nil {
			resp.Error = fmt.Sprintf("encoding the result of %q: %v", req.Op, err)
		}
		if err := enc.Encode(&resp); err != nil {
			fmt.Fprintf(os.Stderr, "alqd-bench child: writing a response: %v\n", err)
			return 1
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "alqd-bench child: reading requests: %v\n", err)
		return 1
	}
	return 0
}

// child is the orchestrator's handle on one child process. Its methods are
// safe for concurrent use; calls are answered in order.
type child struct {
	role string
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	mu   sync.Mutex
	dead error // first transport error, sticky
}

// startChild starts this executable as a child in role.
func startChild(role string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: finding the executable to start a %s child: %w", role, err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), ChildEnv+"="+role)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: starting a %s child: %w", role, err)
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	return &child{role: role, cmd: cmd, in: in, out: sc}, nil
}

// pid returns the child's process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// call runs op with args in the child and decodes its result into result
// (nil to discard it). When ctx ends first the child is killed, because its
// answer can no longer be matched to a request.
func (c *child) call(ctx context.Context, op string, args, result any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead != nil {
		return c.dead
	}
	raw, err := json.Marshal(args)
	if err != nil {
		return err
	}
	line, err := json.Marshal(request{Op: op, Args: raw})
	if err != nil {
		return err
	}
	if _, err := c.in.Write(append(line, '\n')); err != nil {
		c.dead = fmt.Errorf("bench: %s child (pid %d) is gone: writing %q: %w", c.role, c.pid(), op, err)
		return c.dead
	}

	got := make(chan error, 1)
	var resp response
	go func() {
		if !c.out.Scan() {
			err := c.out.Err()
			if err == nil {
				err = io.EOF
			}
			got <- err
			return
		}
		got <- json.Unmarshal(c.out.Bytes(), &resp)
	}()
	select {
	case err = <-got:
	case <-ctx.Done():
		c.cmd.Process.Kill()
		<-got
		c.dead = fmt.Errorf("bench: %s child (pid %d) killed: %q did not finish: %w", c.role, c.pid(), op, ctx.Err())
		return c.dead
	}
	if err != nil {
		c.dead = fmt.Errorf("bench: %s child (pid %d) exited or broke the protocol during %q: %w", c.role, c.pid(), op, err)
		return c.dead
	}
	if resp.Error != "" {
		return fmt.Errorf("%s child %s: %s", c.role, op, resp.Error)
	}
	if result == nil {
		return nil
	}
	return json.Unmarshal(resp.Result, result)
}

// close ends the child: it closes stdin, which makes a healthy child exit,
// and kills it if it has not exited within grace. It returns an error when
// the child exited with a failure (a crash) before being killed.
func (c *child) close(grace time.Duration) error {
	c.in.Close()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("bench: %s child (pid %d) failed: %w", c.role, c.pid(), err)
		}
		return nil
	case <-time.After(grace):
		c.cmd.Process.Kill()
		<-done
		return fmt.Errorf("bench: %s child (pid %d) did not exit within %v and was killed", c.role, c.pid(), grace)
	}
}

// errNotAvailable marks a contender or measurement that cannot run in this
// build; its text is the reason printed in the report.
var errNotAvailable = errors.New("not available")
