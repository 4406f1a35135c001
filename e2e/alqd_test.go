package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binaryEnv names an alqd binary to test instead of building ./cmd/alqd,
// for example a release build.
const binaryEnv = "ALQD_E2E_BINARY"

const (
	// readyTimeout bounds the wait for a started alqd to accept TCP
	// connections.
	readyTimeout = 20 * time.Second
	// stopTimeout is how long alqd may take to exit after SIGTERM before it
	// is killed and the test fails.
	stopTimeout = 15 * time.Second
	// logTail is how many bytes of each alqd log a failed test prints.
	logTail = 8 << 10
)

// buildAlqd builds cmd/alqd into dir and returns the binary's path, or
// returns the binary named by binaryEnv. It runs the go command from the
// module root, which is the parent of this package's directory.
func buildAlqd(ctx context.Context, dir string) (string, error) {
	if bin := os.Getenv(binaryEnv); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("%s=%s: %w", binaryEnv, bin, err)
		}
		return bin, nil
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go command is needed to build cmd/alqd: %w", err)
	}
	bin := filepath.Join(dir, "alqd")
	cmd := exec.CommandContext(ctx, goCmd, "build", "-o", bin, "./cmd/alqd")
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/alqd failed: %w\n%s", err, out)
	}
	return bin, nil
}

// freePort returns a loopback port on which both a TCP and a UDP socket
// could be bound a moment ago; alqd serves TCP and UDP on the same port.
// Another process may take it before alqd binds it, which makes the start
// fail loudly rather than misbehave.
func freePort() (int, error) {
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		return port, nil
	}
	return 0, errors.New("no loopback port was free for both TCP and UDP after 20 tries")
}

// alqdConfig is the command line of one alqd under test.
type alqdConfig struct {
	Binary    string
	LeaseFile string // Kea's live memfile lease file
	DataDir   string
	Listen    netip.AddrPort
	Metrics   netip.AddrPort
	LogDir    string // one log file per start, alqd-<n>.log
}

func (c alqdConfig) args() []string {
	return []string{
		"--kea-lease-file", c.LeaseFile,
		"--active",
		"--insecure",
		"--listen", c.Listen.String(),
		"--allow", "127.0.0.0/8",
		"--data-dir", c.DataDir,
		"--metrics", c.Metrics.String(),
	}
}

// alqdProcess is one running alqd child process. Its methods are safe for
// concurrent use.
type alqdProcess struct {
	cfg     alqdConfig
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed when Wait has returned
	waitErr error         // set before exited is closed

	stopOnce sync.Once
	stopErr  error
}

// startAlqd starts alqd with cfg, its output going to LogDir/alqd-<n>.log,
// and waits until it accepts TCP connections on cfg.Listen. The process is
// killed by its process ID in t.Cleanup if it is still running then, and the
// tail of its log is printed when the test has failed.
func startAlqd(t testing.TB, cfg alqdConfig, n int) (*alqdProcess, error) {
	logPath := filepath.Join(cfg.LogDir, fmt.Sprintf("alqd-%d.log", n))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(cfg.Binary, cfg.args()...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", cfg.Binary, err)
	}
	p := &alqdProcess{cfg: cfg, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("tail of %s:\n%s", logPath, tailFile(logPath, logTail))
		}
	})

	if err := p.waitReady(readyTimeout); err != nil {
		return nil, err
	}
	return p, nil
}

// waitReady polls cfg.Listen until a TCP connection succeeds, the process
// exits, or timeout passes.
func (p *alqdProcess) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", p.cfg.Listen.String(), time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("alqd (pid %d) exited before it accepted connections on %s: %v; log %s:\n%s",
				p.cmd.Process.Pid, p.cfg.Listen, p.waitErr, p.logPath, tailFile(p.logPath, logTail))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("alqd (pid %d) did not accept connections on %s within %v: %w",
				p.cmd.Process.Pid, p.cfg.Listen, timeout, err)
		}
	}
}

// PID returns the process ID of alqd.
func (p *alqdProcess) PID() int { return p.cmd.Process.Pid }

// Stop sends SIGTERM and waits for alqd to exit. It returns an error when
// alqd had exited before, exits with a failure status, or takes longer than
// stopTimeout, in which case it is killed. Stop is idempotent.
func (p *alqdProcess) Stop() error {
	p.stopOnce.Do(func() {
		select {
		case <-p.exited:
			p.stopErr = fmt.Errorf("alqd (pid %d) had exited before SIGTERM: %v", p.PID(), p.waitErr)
			return
		default:
		}
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			p.stopErr = fmt.Errorf("send SIGTERM to alqd (pid %d): %w", p.PID(), err)
			return
		}
		select {
		case <-p.exited:
			if p.waitErr != nil {
				p.stopErr = fmt.Errorf("alqd (pid %d) exited with %v after SIGTERM", p.PID(), p.waitErr)
			}
		case <-time.After(stopTimeout):
			p.kill()
			p.stopErr = fmt.Errorf("alqd (pid %d) did not exit within %v of SIGTERM and was killed", p.PID(), stopTimeout)
		}
	})
	return p.stopErr
}

// kill sends SIGKILL unless alqd has exited, and waits for the exit.
func (p *alqdProcess) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// Exited reports whether the process has ended, and how.
func (p *alqdProcess) Exited() (bool, error) {
	select {
	case <-p.exited:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// scrapeMetrics fetches alqd's Prometheus text exposition from addr.
func scrapeMetrics(ctx context.Context, addr netip.AddrPort) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr.String()+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics on %s returned %s", addr, resp.Status)
	}
	return body, nil
}

// tailFile returns the last n bytes of the file at path, starting at a line,
// or a note saying why it could not be read.
func tailFile(path string, n int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}
