package ingest

import (
	"bytes"
	"errors"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// notifier turns inotify events on the lease file's directory into wake-ups
// of the follower. Events are coalesced: events has room for one, and the
// follower reads the file to its end on each wake-up anyway. The directory
// is watched, not the file, so that LFC's renames and the new live file are
// seen as well.
type notifier struct {
	file   *os.File
	events chan struct{}
	done   chan struct{}
}

const notifyMask = unix.IN_MODIFY | unix.IN_CLOSE_WRITE | unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO

// newNotifier watches dir and signals events for names that start with
// base, which covers the live file and Kea's .1, .2, .completed and .pid.
func newNotifier(dir, base string) (*notifier, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("inotify_init1", err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, notifyMask); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("inotify_add_watch", err)
	}
	// A non-blocking descriptor in os.File goes through the runtime poller,
	// so Close wakes a blocked Read and the reader goroutine ends.
	n := &notifier{
		file:   os.NewFile(uintptr(fd), "inotify"),
		events: make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	go n.read([]byte(base))
	return n, nil
}

func (n *notifier) read(base []byte) {
	defer close(n.done)
	buf := make([]byte, 16<<10)
	for {
		count, err := n.file.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			n.signal() // an overflow or a read error: let the follower look
			return
		}
		if matchesEvent(buf[:count], base) {
			n.signal()
		}
	}
}

func (n *notifier) signal() {
	select {
	case n.events <- struct{}{}:
	default:
	}
}

// matchesEvent reports whether any event in buf names a file starting with
// base, or whether the kernel dropped events (IN_Q_OVERFLOW).
func matchesEvent(buf, base []byte) bool {
	const headerLen = unix.SizeofInotifyEvent
	for len(buf) >= headerLen {
		event := (*unix.InotifyEvent)(unsafe.Pointer(&buf[0]))
		end := headerLen + int(event.Len)
		if end > len(buf) {
			return true
		}
		if event.Mask&unix.IN_Q_OVERFLOW != 0 {
			return true
		}
		name := bytes.TrimRight(buf[headerLen:end], "\x00")
		if bytes.HasPrefix(name, base) {
			return true
		}
		buf = buf[end:]
	}
	return false
}

// close stops the watch and waits for the reader goroutine to end.
func (n *notifier) close() {
	n.file.Close()
	<-n.done
}

// processAlive reports whether a process with this pid exists.
func processAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}
