package requestortest

import (
	"net"
	"sync"
	"testing"
)

// UDPServer is a scripted UDP leasequery server on 127.0.0.1. For every
// datagram it calls the handler, which returns the datagrams to send back
// (none drops the request, as a lost packet would).
type UDPServer struct {
	pc      net.PacketConn
	handler func(Received) [][]byte

	mu       sync.Mutex
	received []Received
	wg       sync.WaitGroup
}

// NewUDPServer starts a UDPServer; t.Cleanup stops it.
func NewUDPServer(t testing.TB, handler func(Received) [][]byte) *UDPServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("requestortest: listen on UDP 127.0.0.1:0: %v", err)
	}
	s := &UDPServer{pc: pc, handler: handler}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

// Addr returns the host:port the server listens on.
func (s *UDPServer) Addr() string { return s.pc.LocalAddr().String() }

// Received returns the datagrams received so far, in order.
func (s *UDPServer) Received() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.received...)
}

// Close stops the server and waits for it.
func (s *UDPServer) Close() {
	s.pc.Close()
	s.wg.Wait()
}

func (s *UDPServer) serve() {
	defer s.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, peer, err := s.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		r := Received{Raw: append([]byte(nil), buf[:n]...)}
		r.Err = r.Msg.Decode(r.Raw)
		s.mu.Lock()
		s.received = append(s.received, r)
		s.mu.Unlock()
		for _, reply := range s.handler(r) {
			s.pc.WriteTo(reply, peer)
		}
	}
}
