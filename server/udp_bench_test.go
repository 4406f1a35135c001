package server

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
)

// udpBenchBindings is the number of bindings the UDP benchmarks store.
const udpBenchBindings = 100000

// udpBenchQueries returns one LEASEQUERY per query kind that relays send
// over UDP, each matching one of the bindings seedLink stores.
func udpBenchQueries() []struct {
	name string
	pkt  []byte
} {
	return []struct {
		name string
		pkt  []byte
	}{
		{"by-address", leasequery(0x1001, byAddress("2001:db8:1::1:2345"))},
		{"by-client-id", leasequery(0x1002, byClientID(duid(0x12345), "2001:db8:1::1"))},
	}
}

// BenchmarkUDPHandle measures the server's work for one RFC 5007
// Leasequery over UDP without the socket: parsing the query, the store
// lookup and encoding the LEASEQUERY-REPLY.
func BenchmarkUDPHandle(b *testing.B) {
	st := openStore(b, nil)
	seedLink(b, st, udpBenchBindings)
	srv := startServer(b, st, testConfig())
	u := srv.udp
	from := netip.MustParseAddr("::1")
	for _, q := range udpBenchQueries() {
		b.Run(q.name, func(b *testing.B) {
			if reply := u.handle(q.pkt, from); len(reply) == 0 {
				b.Fatal("no reply")
			} else if m := decodeReply(b, reply); !hasClientData(m) {
				b.Fatalf("reply without OPTION_CLIENT_DATA: %v", describeMsg(b, m))
			}
			b.ReportAllocs()
			for b.Loop() {
				u.handle(q.pkt, from)
			}
		})
	}
}

// BenchmarkUDPRoundTrip measures a UDP Leasequery round trip over
// loopback, one query in flight, as a relay asking about one client sees
// it. The anchor, measured in the same run, is a goroutine in the same
// process that echoes the datagram back. The ratio metric is the query's
// round trip over the echo's.
func BenchmarkUDPRoundTrip(b *testing.B) {
	st := openStore(b, nil)
	seedLink(b, st, udpBenchBindings)
	srv := startServer(b, st, testConfig())

	echo, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		b.Fatal(err)
	}
	defer echo.Close()
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := echo.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = echo.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	echoAddr := echo.LocalAddr().(*net.UDPAddr).AddrPort()

	var anchor float64
	for _, q := range udpBenchQueries() {
		for _, target := range []struct {
			name string
			addr netip.AddrPort
		}{{"anchor-echo", echoAddr}, {"alqd", srv.UDPAddr()}} {
			b.Run(q.name+"/"+target.name, func(b *testing.B) {
				c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(target.addr))
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				buf := make([]byte, 65536)
				b.ReportAllocs()
				start := time.Now()
				for b.Loop() {
					if _, err := c.Write(q.pkt); err != nil {
						b.Fatal(err)
					}
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					if _, err := c.Read(buf); err != nil {
						b.Fatalf("no reply from %s: %v", target.name, err)
					}
				}
				perOp := float64(time.Since(start).Nanoseconds()) / float64(b.N)
				if target.name == "anchor-echo" {
					anchor = perOp
					return
				}
				if anchor > 0 {
					b.ReportMetric(perOp/anchor, "ratio")
				}
			})
		}
	}
}

func hasClientData(m *codec.Message) bool {
	_, ok := m.Options.ClientData()
	return ok
}
