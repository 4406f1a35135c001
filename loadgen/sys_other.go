//go:build !linux

package loadgen

import (
	"errors"
	"syscall"
)

// RaiseFileLimit is implemented on Linux only; elsewhere it returns 0 and an
// error, and RunSwarm does not check the connection count against a limit.
func RaiseFileLimit() (uint64, error) {
	return 0, errors.New("loadgen: raising RLIMIT_NOFILE is implemented on Linux only")
}

// dialControl sets no socket options outside Linux, so SlowReceiveBuffer
// has no effect there.
func dialControl(bool, int) func(network, address string, c syscall.RawConn) error {
	return nil
}
