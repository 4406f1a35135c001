package server

import "golang.org/x/sys/unix"

// setNotSentLowWater sets TCP_NOTSENT_LOWAT on fd, so the kernel accepts
// new data only while less than n octets wait unsent.
func setNotSentLowWater(fd, n int) error {
	return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, n)
}
