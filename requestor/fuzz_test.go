package requestor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor/requestortest"
)

// FuzzServerMessages feeds arbitrary byte streams, split into frames, to the
// decoder and to the bulk, active and UDP reply handling. Nothing may
// panic, and every Binding event must be well formed.
func FuzzServerMessages(f *testing.F) {
	dir := filepath.Join("..", "testdata", "vectors")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".hex") {
			continue
		}
		b, err := requestortest.ReadHex(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if strings.HasPrefix(e.Name(), "stream_") {
			f.Add(b)
		} else if framed, err := codec.AppendFrame(nil, b); err == nil {
			f.Add(framed)
		}
	}

	f.Fuzz(func(t *testing.T, stream []byte) {
		c := &Conn{server: "fuzz"}
		c.dec.skew = &skewEstimator{}
		bulk := &bulkQuery{}
		active := &activeState{catchUp: true, startTime: 1}
		var fr codec.Framer
		fr.Feed(stream)
		now := time.Now()
		for i := 0; ; i++ {
			frame, err := fr.Next()
			if err != nil || frame == nil {
				return
			}
			var m message
			if c.dec.decode(frame, now, SourceActive, &m) != nil {
				continue
			}
			if i == 0 {
				bulk.xid, active.xid = m.info.TransactionID, m.info.TransactionID
			}
			evs, _ := c.bulkMessage(bulk, &m, nil)
			checkEvents(t, evs)
			evs, _ = c.activeMessage(active, &m, nil)
			checkEvents(t, evs)
			if len(m.clientLinks) > 0 {
				clientLinks(m.clientLinks)
			}
		}
	})
}

func checkEvents(t *testing.T, evs []Event) {
	for _, ev := range evs {
		b, ok := ev.(Binding)
		if !ok {
			continue
		}
		if b.Type < TypeNA || b.Type > TypePD {
			t.Fatalf("binding with type %v", b.Type)
		}
		if b.State != StateActive && b.State != StateEnded {
			t.Fatalf("binding with state %v", b.State)
		}
		if (b.ValidLifetime == 0) != (b.State == StateEnded) {
			t.Fatalf("valid lifetime %d with state %v", b.ValidLifetime, b.State)
		}
		if b.Type == TypePD && !b.Prefix.IsValid() || b.Type != TypePD && !b.Addr.IsValid() {
			t.Fatalf("%v binding without its address or prefix", b.Type)
		}
	}
}

// BenchmarkBulkMessage decodes the two-binding LEASEQUERY-DATA of the
// recorded bulk stream into events.
func BenchmarkBulkMessage(b *testing.B) {
	frame, err := requestortest.ReadHex(filepath.Join("..", "testdata", "vectors", "c03_bulk_data_second_binding.hex"))
	if err != nil {
		b.Fatal(err)
	}
	c := &Conn{server: "bench"}
	c.dec.skew = &skewEstimator{}
	q := &bulkQuery{xid: 0xb10c01, phase: streaming}
	var m message
	var evs []Event
	now := time.Now()
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if err := c.dec.decode(frame, now, SourceBulk, &m); err != nil {
			b.Fatal(err)
		}
		if evs, err = c.bulkMessage(q, &m, evs[:0]); err != nil || len(evs) != 2 {
			b.Fatal(err, len(evs))
		}
	}
}
