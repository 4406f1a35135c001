package server

import (
	"context"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
)

// TestTLSShutdownPipelinedMixed pipelines queries of several kinds behind
// a bulk query on a TLS connection and shuts the server down while the
// bulk query streams. Each pipelined LEASEQUERY or ACTIVELEASEQUERY, a
// malformed one included, must get LEASEQUERY-REPLY QueryTerminated. The
// connection must close at the first message that is not a query or at a
// frame that never completes, with no reply after it. Shutdown
// must return within its context in every case.
func TestTLSShutdownPipelinedMixed(t *testing.T) {
	const bindings = 20000
	framed := func(msgs ...[]byte) []byte {
		var out []byte
		for _, m := range msgs {
			var err error
			if out, err = codec.AppendFrame(out, m); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	// A LEASEQUERY header with no options: no OPTION_LQ_QUERY.
	malformed := []byte{byte(codec.MsgLeasequery), 0, 0, 3}

	tests := []struct {
		name      string
		pipelined []byte
		wantXIDs  []uint32 // pipelined queries that get QueryTerminated, in order
	}{
		{"active, malformed, STARTTLS, then a query", framed(
			activeLeasequeryMessage(2),
			malformed,
			startTLSMessage(4),
			leasequery(5, byLink("2001:db8:1::1"))), []uint32{2, 3}},
		{"query, then an incomplete frame", append(framed(leasequery(2, byLink("2001:db8:1::1"))),
			0, 200, byte(codec.MsgLeasequery), 0, 0), []uint32{2}},
		{"frame shorter than a header", append(framed(leasequery(2, byLink("2001:db8:1::1"))),
			0, 2, byte(codec.MsgLeasequery), 0), []uint32{2}},
		{"SOLICIT", framed(
			leasequery(2, byLink("2001:db8:1::1")),
			[]byte{byte(codec.MsgSolicit), 0, 0, 3},
			leasequery(4, byLink("2001:db8:1::1"))), []uint32{2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, f, runErr := startTLSServerWithLink(t, bindings)
			busy := dialTLS(t, srv, f.clientConfig(f.client))
			busy.send(leasequery(1, byLink("2001:db8:1::1")))
			busy.write(tc.pipelined)
			if m := busy.next(); m.Type != codec.MsgLeasequeryReply || m.TransactionID != 1 {
				t.Fatalf("first answer %v xid %#x, want LEASEQUERY-REPLY xid 0x1", m.Type, m.TransactionID)
			}

			last, pending, sent, shutdownErr := shutdownDuringBulk(t, srv, busy)
			if last == nil || last.Type != codec.MsgLeasequeryDone || status(t, last) != codec.StatusQueryTerminated {
				t.Errorf("bulk query ended with %v, want LEASEQUERY-DONE QueryTerminated", describeMsg(t, last))
			}
			if sent-2 >= bindings {
				t.Fatalf("all %d bindings were sent before the shutdown took effect; the test proves nothing", bindings)
			}
			var got []uint32
			for _, m := range pending {
				got = append(got, m.TransactionID)
				if m.Type != codec.MsgLeasequeryReply || status(t, m) != codec.StatusQueryTerminated {
					t.Errorf("pipelined xid %#x: %v, want LEASEQUERY-REPLY QueryTerminated", m.TransactionID, describeMsg(t, m))
				}
			}
			if len(got) != len(tc.wantXIDs) {
				t.Fatalf("answered pipelined xids %v, want %v", got, tc.wantXIDs)
			}
			for i := range got {
				if got[i] != tc.wantXIDs[i] {
					t.Errorf("answered pipelined xids %v, want %v", got, tc.wantXIDs)
					break
				}
			}
			if shutdownErr != nil {
				t.Errorf("Shutdown: %v", shutdownErr)
			}
			if err := <-runErr; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
}

// shutdownDuringBulk shuts srv down, with 10 s to finish, while r reads
// the reply to the bulk query of xid 1 until the connection ends. It
// returns the last message of that reply, the messages of other xids,
// the number of messages of the reply plus one, and what Shutdown
// returned.
func shutdownDuringBulk(t *testing.T, srv *Server, r *testRequestor) (last *codec.Message, pending []*codec.Message, count int, shutdownErr error) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	count = 1
	for {
		m, err := r.tryNext(10 * time.Second)
		if err != nil {
			break
		}
		if m.TransactionID != 1 {
			pending = append(pending, m)
			continue
		}
		count++
		last = m
	}
	return last, pending, count, <-done
}

// startTLSServerWithLink runs a TLS server whose store has n bindings on
// link 2001:db8:1::1, and returns it with its fixture and the channel that
// receives what Run returned. The test shuts the server down.
func startTLSServerWithLink(t *testing.T, n int) (*Server, *tlsFixture, <-chan error) {
	t.Helper()
	st := openStore(t, nil)
	seedLink(t, st, n)
	f := newTLSFixture(t)
	srv, err := New(f.config(), st, WithClock(func() time.Time { return testNow }), WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run() }()
	<-srv.Ready()
	return srv, f, runErr
}
