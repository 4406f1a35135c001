//go:build !linux

package server

// setNotSentLowWater does nothing where TCP_NOTSENT_LOWAT is not available
// through golang.org/x/sys; flow control then relies on gnet's pending
// output alone, behind the kernel's full socket buffer.
func setNotSentLowWater(fd, n int) error { return nil }
