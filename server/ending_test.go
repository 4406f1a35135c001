package server

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/store"
)

// readToClose reads messages until the server closes the connection and
// returns them by transaction-id, in order. It fails after timeout.
func (r *testRequestor) readToClose(timeout time.Duration) map[uint32][]*codec.Message {
	r.t.Helper()
	out := make(map[uint32][]*codec.Message)
	deadline := time.Now().Add(timeout)
	for {
		m, err := r.tryNext(time.Until(deadline))
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				r.t.Fatalf("connection still open after %v", timeout)
			}
			return out
		}
		out[m.TransactionID] = append(out[m.TransactionID], m)
	}
}

// checkAnswer checks that msgs is one complete bulk answer: a
// LEASEQUERY-REPLY, then LEASEQUERY-DATA, then a LEASEQUERY-DONE unless the
// REPLY is complete by itself. It returns the status that ends it and the
// number of bindings.
func checkAnswer(t *testing.T, xid uint32, msgs []*codec.Message) (codec.StatusCode, int) {
	t.Helper()
	if len(msgs) == 0 || msgs[0].Type != codec.MsgLeasequeryReply {
		t.Errorf("xid %#x: answer does not start with LEASEQUERY-REPLY (%d messages)", xid, len(msgs))
		return 0, 0
	}
	a := &answer{reply: msgs[0]}
	for i, m := range msgs[1:] {
		if a.complete() {
			t.Errorf("xid %#x: %v after the answer was complete", xid, m.Type)
			return 0, 0
		}
		switch {
		case m.Type == codec.MsgLeasequeryData:
			a.data = append(a.data, m)
		case m.Type == codec.MsgLeasequeryDone && i == len(msgs)-2:
			a.done = m
		default:
			t.Errorf("xid %#x: unexpected %v at message %d", xid, m.Type, i+1)
			return 0, 0
		}
	}
	if !a.complete() {
		t.Errorf("xid %#x: answer of %d messages has no end", xid, len(msgs))
		return 0, 0
	}
	last := a.reply
	if a.done != nil {
		last = a.done
	}
	return status(t, last), len(a.clientData(t))
}

// seedLinkBindings stores n bindings of distinct clients on link.
func seedLinkBindings(t *testing.T, st *store.Store, n int, link string) {
	t.Helper()
	bs := make([]store.Binding, 0, n)
	for i := range n {
		bs = append(bs, binding(fmt.Sprintf("%s%x/128", link[:len(link)-1], 0x1000+i), duid(i), link))
	}
	seed(t, st, bs...)
}

// TestActiveDuringBulkAnswersBulk sends two bulk queries, an
// ACTIVELEASEQUERY and another bulk query in one write. The
// ACTIVELEASEQUERY gets NotAllowed; the bulk queries accepted before it
// are answered in full; nothing after it is answered; then the
// connection closes.
func TestActiveDuringBulkAnswersBulk(t *testing.T) {
	st := openStore(t, nil)
	seedLinkBindings(t, st, 3000, "2001:db8:1::1")
	seedLinkBindings(t, st, 10, "2001:db8:2::1")
	srv := startServer(t, st, activeConfig())
	r := dial(t, srv)

	var b []byte
	b, _ = codec.AppendFrame(b, leasequery(0x10, byLink("2001:db8:1::1")))
	b, _ = codec.AppendFrame(b, leasequery(0x12, byLink("2001:db8:2::1")))
	b, _ = codec.AppendFrame(b, activeleasequery(0x11, nil))
	b, _ = codec.AppendFrame(b, leasequery(0x13, byLink("2001:db8:2::1")))
	r.write(b)
	got := r.readToClose(10 * time.Second)

	for _, want := range []struct {
		xid      uint32
		bindings int
	}{{0x10, 3000}, {0x12, 10}} {
		code, n := checkAnswer(t, want.xid, got[want.xid])
		if code != codec.StatusSuccess || n != want.bindings {
			t.Errorf("xid %#x: status %v with %d bindings, want Success with %d", want.xid, code, n, want.bindings)
		}
	}
	if msgs := got[0x11]; len(msgs) != 1 || msgs[0].Type != codec.MsgLeasequeryReply || status(t, msgs[0]) != codec.StatusNotAllowed {
		t.Errorf("ACTIVELEASEQUERY got %d messages, want one LEASEQUERY-REPLY NotAllowed", len(msgs))
	}
	if msgs := got[0x13]; len(msgs) != 0 {
		t.Errorf("query sent after the ACTIVELEASEQUERY got %d messages, want none", len(msgs))
	}
}

// TestFloodAnswersAcceptedQueries writes far more queries than the server
// reads ahead, in one go, and reads only then. Every query the server
// accepted gets a complete answer, QueryTerminated where it was cut
// short, before the connection closes.
func TestFloodAnswersAcceptedQueries(t *testing.T) {
	st := openStore(t, nil)
	seedLinkBindings(t, st, 200, "2001:db8:1::1")
	cfg := testConfig()
	cfg.MaxPipelinedQueries = 4
	m := newTestMetrics(t)
	srv := startServer(t, st, cfg, WithMetrics(m))
	r := dial(t, srv)

	// About 200 KB of queries, over three times the 64 KiB input limit.
	var flood []byte
	const queries = 4000
	for xid := uint32(1); xid <= queries; xid++ {
		flood, _ = codec.AppendFrame(flood, leasequery(xid, byLink("2001:db8:1::1")))
	}
	go func() { _, _ = r.conn.Write(flood) }() // the server may close before taking it all
	got := r.readToClose(30 * time.Second)

	// The first query runs and MaxPipelinedQueries wait behind it before
	// anything can overflow.
	if len(got) < 1+cfg.MaxPipelinedQueries {
		t.Fatalf("%d queries answered, want at least %d", len(got), 1+cfg.MaxPipelinedQueries)
	}
	terminated := 0
	for xid, msgs := range got {
		code, n := checkAnswer(t, xid, msgs)
		switch code {
		case codec.StatusSuccess:
			if n != 200 {
				t.Errorf("xid %d: Success with %d bindings, want 200", xid, n)
			}
		case codec.StatusQueryTerminated:
			terminated++
		default:
			t.Errorf("xid %d: status %v, want Success or QueryTerminated", xid, code)
		}
	}
	if terminated == 0 {
		t.Errorf("no query ended with QueryTerminated among %d answered; the flood was not detected", len(got))
	}
	for xid := uint32(1); xid <= uint32(len(got)); xid++ {
		if _, ok := got[xid]; !ok {
			t.Errorf("xid %d not answered though a later one was; queries are accepted in order", xid)
		}
	}
	eventually(t, 5*time.Second, "the close counted as a protocol violation", func() bool {
		return closedCount(m, CloseProtocolViolation) == 1
	})
}
