package requestor_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/requestortest"
)

// BenchmarkBulkStream reads a bulk answer of 10,000 single-address clients
// over loopback TCP from a server that writes one pre-encoded stream, and
// reports bindings per second.
func BenchmarkBulkStream(b *testing.B) {
	const clients = 10_000
	bodies := make([][]byte, clients)
	for i := range bodies {
		duid := []byte{0, 3, 0, 1, 0, 0, 0x5e, byte(i >> 16), byte(i >> 8), byte(i)}
		bodies[i] = requestortest.Binding(duid, fmt.Sprintf("2001:db8:%x::%x", i>>16, i&0xffff+1), 30, 1800, 3600)
	}
	// Encode the answer once; each query only patches its transaction-id.
	var stream []byte
	var xidAt []int
	for i, body := range bodies {
		t := codec.MsgLeasequeryData
		if i == 0 {
			t = codec.MsgLeasequeryReply
		}
		xidAt = append(xidAt, len(stream)+codec.FrameHeaderLen+1)
		stream, _ = codec.AppendFrame(stream, requestortest.Msg(t, 0, requestortest.OptBaseTime(820540800), body))
	}
	xidAt = append(xidAt, len(stream)+codec.FrameHeaderLen+1)
	stream, _ = codec.AppendFrame(stream, requestortest.Msg(codec.MsgLeasequeryDone, 0))

	srv := requestortest.NewServer(b, func(c *requestortest.Conn) {
		for {
			r, err := c.ReadMessage()
			if err != nil {
				return
			}
			x := r.Msg.TransactionID
			for _, at := range xidAt {
				stream[at], stream[at+1], stream[at+2] = byte(x>>16), byte(x>>8), byte(x)
			}
			if c.Write(stream) != nil {
				return
			}
		}
	})
	cfg := requestor.Config{Server: srv.Addr(), BulkDataTimeout: 10 * time.Second}
	conn, err := requestor.Dial(b.Context(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	q := requestor.Query{Type: codec.QueryByLinkAddress, Link: linkQuery.Link}

	b.ReportAllocs()
	total := 0
	for b.Loop() {
		n := 0
		err := conn.Bulk(b.Context(), q, func(ev requestor.Event) error {
			if _, ok := ev.(requestor.Binding); ok {
				n++
			}
			return nil
		})
		if err != nil || n != clients {
			b.Fatalf("Bulk: %v, %d bindings", err, n)
		}
		total += n
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "bindings/s")
}
