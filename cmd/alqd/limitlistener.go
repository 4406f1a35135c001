package main

import (
	"net"
	"sync"
)

// maxHTTPConns caps the open connections of each HTTP listener (metrics and
// ingest). The server's descriptor reserve keeps a margin of 256 for these
// and other uncounted files, so the two listeners together stay below it and
// an HTTP flood cannot make gnet's accept fail with EMFILE.
const maxHTTPConns = 64

// limitListener blocks Accept while max connections it returned are open.
type limitListener struct {
	net.Listener
	slots chan struct{}
}

func newLimitListener(ln net.Listener, max int) net.Listener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, max)}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.slots <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

// limitConn gives its listener slot back once, on the first Close.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
