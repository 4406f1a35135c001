//go:build unix

package requestortest

import (
	"net"
	"strconv"
	"syscall"
	"testing"
)

// ClosedPort returns a 127.0.0.1 TCP address that refuses connections for
// the rest of the test. It holds the port with a socket that is bound but
// not listening, so no other listener can take it, which a port picked by
// listening and closing again cannot promise.
func ClosedPort(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatalf("requestortest: socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("requestortest: bind 127.0.0.1:0: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("requestortest: getsockname: %v", err)
	}
	port := sa.(*syscall.SockaddrInet4).Port
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}
