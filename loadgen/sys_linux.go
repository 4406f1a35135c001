//go:build linux

package loadgen

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// RaiseFileLimit raises the soft RLIMIT_NOFILE of the process to its hard
// limit, so that it can hold as many connections as the system lets it,
// and returns the soft limit in effect.
func RaiseFileLimit() (uint64, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("loadgen: reading RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &raised); err != nil {
			return lim.Cur, fmt.Errorf("loadgen: raising RLIMIT_NOFILE from %d to %d: %w", lim.Cur, lim.Max, err)
		}
		lim = raised
	}
	return lim.Cur, nil
}

// dialControl returns the net.Dialer Control function that prepares a
// requestor socket before it connects, or nil when there is nothing to do.
//
// With a fixed local address, IP_BIND_ADDRESS_NO_PORT lets the kernel pick
// the source port at connect time by the whole 4-tuple, instead of at bind
// time among the ports unused on that address. One source address then
// serves up to one connection per ephemeral port and server. A receive
// buffer set here, before the SYN, also limits the window scale the
// connection negotiates.
func dialControl(bound bool, receiveBuffer int) func(network, address string, c syscall.RawConn) error {
	if !bound && receiveBuffer <= 0 {
		return nil
	}
	return func(network, address string, c syscall.RawConn) error {
		var opErr error
		err := c.Control(func(fd uintptr) {
			if bound {
				// Best effort: without it, binding only wastes ports.
				_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
			}
			if receiveBuffer > 0 {
				opErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, receiveBuffer)
			}
		})
		if err != nil {
			return err
		}
		if opErr != nil {
			return fmt.Errorf("setting SO_RCVBUF to %d: %w", receiveBuffer, opErr)
		}
		return nil
	}
}
