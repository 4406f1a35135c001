package keatest

import (
	"bytes"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// Child processes get SIGKILL when the test binary dies (Pdeathsig), so that a
// crashed or timed-out test leaves no Kea running. Linux sends that signal
// when the thread that forked the child exits, not the process, and the Go
// runtime ends a thread whenever a goroutine exits while locked to it. So every
// child is forked from one thread that is locked for the life of the process
// and never exits: the one running spawnLoop.

// spawnRequest is a request to spawnLoop to start cmd and send the result
// to done.
type spawnRequest struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	spawnOnce     sync.Once
	spawnRequests chan spawnRequest
)

// spawnLoop starts the commands it receives, on its own locked thread. It
// runs until the process exits.
func spawnLoop(requests <-chan spawnRequest) {
	runtime.LockOSThread()
	for req := range requests {
		req.done <- req.cmd.Start()
	}
}

// startChild starts cmd from the spawning thread with Pdeathsig set to
// SIGKILL. The caller waits for cmd as usual.
func startChild(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnRequests = make(chan spawnRequest)
		go spawnLoop(spawnRequests)
	})
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL

	done := make(chan error, 1)
	spawnRequests <- spawnRequest{cmd: cmd, done: done}
	return <-done
}

// runChild starts cmd with startChild, waits for it and returns its standard
// output and standard error combined, like exec.Cmd.CombinedOutput.
func runChild(cmd *exec.Cmd) ([]byte, error) {
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := startChild(cmd); err != nil {
		return nil, err
	}
	err := cmd.Wait()
	return out.Bytes(), err
}
