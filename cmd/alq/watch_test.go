package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor/requestortest"
)

// TestWatchGoesOnAfterDataMissing checks that alq watch, unlike alq
// mirror, reports DataMissing and keeps following the live updates after
// it: it exits only when the connection ends, with exit code 7, not 8.
func TestWatchGoesOnAfterDataMissing(t *testing.T) {
	srv := requestortest.NewServer(t, func(c *requestortest.Conn) {
		r, err := c.ReadMessage()
		if err != nil || r.Err != nil {
			return
		}
		x := r.Msg.TransactionID
		c.Send(msg(codec.MsgLeasequeryReply, x, optStatus(codec.StatusDataMissing, "trimmed"), optBase(300)),
			msg(codec.MsgLeasequeryData, x, optBase(301), requestortest.Binding(client1, "2001:db8:1::1", 5, 100, 200)),
			msg(codec.MsgLeasequeryData, x, optBase(302), requestortest.Binding(client1, "2001:db8:1::2", 5, 100, 200)))
		c.WaitClosed(100 * time.Millisecond)
	})
	code, stdout, stderr := alq(t, "watch", "--server", srv.Addr(), "--start-time", "160", "--max-attempts", "1", "--json")
	if code != exitIncomplete {
		t.Fatalf("exit code %d, stderr %q; want %d when the connection ends", code, stderr, exitIncomplete)
	}
	want := "connected accepted data_missing binding binding disconnected"
	if got := eventKinds(t, stdout); got != want {
		t.Errorf("events = %s, want %s", got, want)
	}
}

// eventKinds returns the event names of the JSON lines of alq --json
// output, separated by spaces.
func eventKinds(t *testing.T, stdout string) string {
	t.Helper()
	var kinds []string
	for _, l := range jsonLines(t, stdout) {
		kinds = append(kinds, fmt.Sprint(l["event"]))
	}
	return strings.Join(kinds, " ")
}
