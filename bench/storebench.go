package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/ingest"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/server"
	"github.com/alqd/alqd/store"
)

// StoreResult holds the store-level measurements: durable ingest, the bulk
// dump and the catch-up, each with its anchor from the same run.
type StoreResult struct {
	// Durable changes per second: store.Apply with synced group commits,
	// the same through the ingest HTTP API, and plain Pebble synced batches
	// of equal count (the anchor: a key-value store without indexes).
	IngestApply, IngestAPI, IngestPebble float64
	IngestWriters, IngestBatch           int

	// Bulk dump of BulkBindings by QUERY_BY_RELAY_ID over one connection,
	// in bindings per second. alqd is read by a decoding reader and by the
	// requestor package. The anchors are the store's own relay-id scan and
	// the same count of pre-encoded frames of the same size written raw.
	BulkBindings                   int
	BulkFrameSize                  float64 // mean frame size alqd sent, octets
	BulkAlqd, BulkRequestor        float64
	BulkStoreScan, BulkRawWire     float64
	BulkSeconds, BulkRequestorSecs float64

	// Catch-up of CatchUp changed bindings (of BulkBindings): through an
	// ACTIVELEASEQUERY with OPTION_LQ_START_TIME until CatchUpComplete,
	// through a Bulk Leasequery with the same start time, through the
	// store's Changed scan, and as raw frames on one connection.
	CatchUp                 int
	CatchUpActive           time.Duration
	CatchUpBulk, CatchUpRaw time.Duration
	CatchUpStore            time.Duration
	// CatchUpActiveNA is the reason the Active catch-up could not run, ""
	// when it ran.
	CatchUpActiveNA string
}

// storeScenario measures ingest, then loads BulkBindings bindings for the
// bulk dump and changes CatchUp of them for the catch-up.
func (r *runner) storeScenario(ctx context.Context) error {
	res := &StoreResult{}
	r.res.Store = res
	if err := r.ingestBench(ctx, res); err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	fmt.Fprintf(r.log, "ingest durable changes/s: store.Apply %s, ingest API %s, plain Pebble %s\n",
		si(res.IngestApply), si(res.IngestAPI), si(res.IngestPebble))
	if err := r.bulkBench(ctx, res); err != nil {
		return fmt.Errorf("bulk: %w", err)
	}
	return nil
}

// benchBinding returns binding i of the bulk store: an IA_NA address under
// 2001:db8:b::/64 received through relay 0, so that one QUERY_BY_RELAY_ID
// selects them all.
func benchBinding(i int, cltt time.Time) store.Binding {
	var a [16]byte
	copy(a[:], []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0x0b})
	binary.BigEndian.PutUint64(a[8:], uint64(i)+1)
	duid := make([]byte, 0, 14)
	duid = append(duid, 0, 2, 0, 0, 0x7e, 0xd9) // DUID-EN, enterprise 32473
	duid = binary.BigEndian.AppendUint64(duid, uint64(i))
	return store.Binding{
		Key:               store.Key{Type: store.TypeNA, Prefix: netip.PrefixFrom(netip.AddrFrom16(a), 128)},
		ClientID:          duid,
		IAID:              uint32(i),
		PreferredLifetime: preferredLifetime,
		ValidLifetime:     validLifetime,
		State:             store.StateActive,
		CLTT:              cltt,
		LinkAddress:       probeLink,
		RelayID:           relayDUID(0),
	}
}

// ingestBench measures durable changes per second three ways.
func (r *runner) ingestBench(ctx context.Context, res *StoreResult) error {
	const writers, batch = 4, 256
	res.IngestWriters, res.IngestBatch = writers, batch
	dir, err := os.MkdirTemp("", "alqd-bench-ingest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := store.Open(dir+"/store", store.Options{TrimInterval: -1, Logger: discardLogger})
	if err != nil {
		return err
	}
	defer st.Close()

	var next atomic.Int64
	makeBatch := func() []store.Binding {
		first := int(next.Add(batch)) - batch
		b := make([]store.Binding, batch)
		now := time.Now()
		for i := range b {
			b[i] = benchBinding(first+i, now)
		}
		return b
	}
	res.IngestApply, err = timedWriters(ctx, writers, r.scale.ingestTime, batch, func(ctx context.Context) error {
		_, err := st.Apply(ctx, makeBatch(), nil)
		return err
	})
	if err != nil {
		return err
	}

	// The ingest API on loopback, with its own HTTP client.
	h, err := ingest.NewHandler(st, ingest.HandlerConfig{})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	defer hs.Close()
	client, err := ingest.NewClient(ingest.ClientConfig{URL: "http://" + ln.Addr().String()})
	if err != nil {
		return err
	}
	res.IngestAPI, err = timedWriters(ctx, writers, r.scale.ingestTime, batch, func(ctx context.Context) error {
		return client.Send(ctx, makeBatch())
	})
	if err != nil {
		return err
	}

	res.IngestPebble, err = pebbleAnchor(ctx, dir+"/pebble", writers, batch, r.scale.ingestTime)
	return err
}

// timedWriters runs step on writers goroutines until d has passed and
// returns the changes per second (batch per step).
func timedWriters(ctx context.Context, writers int, d time.Duration, batch int, step func(context.Context) error) (float64, error) {
	var steps atomic.Int64
	var firstErr error
	var errOnce sync.Once
	deadline := time.Now().Add(d)
	began := time.Now()
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if err := step(ctx); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				steps.Add(1)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(steps.Load()*int64(batch)) / time.Since(began).Seconds(), nil
}

// pebbleAnchor writes batches of batch 128-octet values with synced
// commits from writers goroutines: what a key-value store without the
// binding indexes and history sustains on this disk.
func pebbleAnchor(ctx context.Context, dir string, writers, batch int, d time.Duration) (float64, error) {
	db, err := pebble.Open(dir, &pebble.Options{FormatMajorVersion: pebble.FormatNewest, Logger: quietPebbleLogger{}})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var next atomic.Uint64
	value := make([]byte, 128)
	return timedWriters(ctx, writers, d, batch, func(context.Context) error {
		b := db.NewBatch()
		defer b.Close()
		first := next.Add(uint64(batch)) - uint64(batch)
		var key [16]byte
		for i := range uint64(batch) {
			binary.BigEndian.PutUint64(key[:8], first+i)
			if err := b.Set(key[:], value, nil); err != nil {
				return err
			}
		}
		return b.Commit(pebble.Sync)
	})
}

// quietPebbleLogger drops Pebble's informational messages.
type quietPebbleLogger struct{}

func (quietPebbleLogger) Infof(string, ...any)  {}
func (quietPebbleLogger) Errorf(string, ...any) {}
func (quietPebbleLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// bulkBench loads the bulk store, dumps it through the server and through
// the anchors, then changes CatchUp bindings and catches up on them.
func (r *runner) bulkBench(ctx context.Context, res *StoreResult) error {
	res.BulkBindings, res.CatchUp = r.scale.bulkBindings, r.scale.catchUp
	dir, err := os.MkdirTemp("", "alqd-bench-bulk-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The fixture loads without syncing; the measurements only read.
	st, err := store.Open(dir, store.Options{TrimInterval: -1, NoSync: true, Logger: discardLogger})
	if err != nil {
		return err
	}
	defer st.Close()

	began := time.Now()
	if err := loadBindings(ctx, st, 0, r.scale.bulkBindings, began); err != nil {
		return err
	}
	fmt.Fprintf(r.log, "loaded %d bindings in %v\n", r.scale.bulkBindings, time.Since(began).Round(time.Millisecond))

	active := alqdActive() == nil
	srv, err := server.New(alqdServerConfig(alqdConfig{MaxConns: 64, Active: active}), st, server.WithLogger(discardLogger))
	if err != nil {
		return err
	}
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run() }()
	<-srv.Ready()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	select {
	case err := <-runErr:
		return fmt.Errorf("alqd server stopped: %w", err)
	default:
	}
	addr := srv.Addr().String()

	// An untimed scan first warms the block cache, so that the anchor and
	// the dumps after it all read a warm cache.
	if _, err := countIter(st.ByRelayID(relayDUID(0), netip.Addr{})); err != nil {
		return err
	}
	began = time.Now()
	scanned, err := countIter(st.ByRelayID(relayDUID(0), netip.Addr{}))
	if err != nil {
		return err
	}
	res.BulkStoreScan = float64(scanned) / time.Since(began).Seconds()

	// alqd bulk dump, read by a decoding reader.
	n, octets, took, err := bulkDump(ctx, addr, 0, false)
	if err != nil {
		return fmt.Errorf("alqd bulk dump: %w", err)
	}
	if n != r.scale.bulkBindings {
		return fmt.Errorf("alqd bulk dump returned %d bindings, want %d", n, r.scale.bulkBindings)
	}
	res.BulkSeconds = took.Seconds()
	res.BulkAlqd = float64(n) / took.Seconds()
	res.BulkFrameSize = float64(octets) / float64(n)

	// alqd bulk dump, read by the requestor package.
	began = time.Now()
	got, err := requestorDump(ctx, addr)
	if err != nil {
		return fmt.Errorf("requestor bulk dump: %w", err)
	}
	res.BulkRequestorSecs = time.Since(began).Seconds()
	res.BulkRequestor = float64(got) / res.BulkRequestorSecs

	// Anchor: raw frames of the same size on one connection.
	res.BulkRawWire, err = rawWire(ctx, r.scale.bulkBindings, nearestFrameSize(res.BulkFrameSize))
	if err != nil {
		return fmt.Errorf("raw wire anchor: %w", err)
	}
	fmt.Fprintf(r.log, "bulk %d bindings/s: alqd %s (decoding reader), %s (requestor); anchors: store scan %s, raw wire %s\n",
		r.scale.bulkBindings, si(res.BulkAlqd), si(res.BulkRequestor), si(res.BulkStoreScan), si(res.BulkRawWire))

	return r.catchUpBench(ctx, st, addr, res)
}

// catchUpBench changes CatchUp bindings after a whole-second mark and
// catches up on them.
func (r *runner) catchUpBench(ctx context.Context, st *store.Store, addr string, res *StoreResult) error {
	// RFC 7653 start times are whole seconds: wait for the next second so
	// that every change lies at or after it and no load change does.
	mark := time.Now().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(mark) + 10*time.Millisecond)
	if err := loadBindings(ctx, st, 0, r.scale.catchUp, time.Now()); err != nil {
		return err
	}

	began := time.Now()
	scanned, err := countIter(st.Changed(mark, time.Time{}))
	if err != nil {
		return err
	}
	res.CatchUpStore = time.Since(began)
	if scanned != r.scale.catchUp {
		return fmt.Errorf("store catch-up scan returned %d bindings, want %d", scanned, r.scale.catchUp)
	}

	n, _, took, err := bulkDump(ctx, addr, codec.DHCPTime(mark), true)
	if err != nil {
		return fmt.Errorf("catch-up through Bulk Leasequery: %w", err)
	}
	if n != r.scale.catchUp {
		return fmt.Errorf("catch-up through Bulk Leasequery returned %d bindings, want %d", n, r.scale.catchUp)
	}
	res.CatchUpBulk = took
	rate, err := rawWire(ctx, r.scale.catchUp, nearestFrameSize(res.BulkFrameSize))
	if err != nil {
		return err
	}
	res.CatchUpRaw = time.Duration(float64(r.scale.catchUp) / rate * float64(time.Second))

	if err := alqdActive(); err != nil {
		res.CatchUpActiveNA = notAvailableReason(err)
	} else {
		n, took, err := activeCatchUp(ctx, addr, codec.DHCPTime(mark))
		if err != nil {
			return fmt.Errorf("catch-up through Active Leasequery: %w", err)
		}
		if n != r.scale.catchUp {
			return fmt.Errorf("catch-up through Active Leasequery returned %d bindings, want %d", n, r.scale.catchUp)
		}
		res.CatchUpActive = took
	}
	fmt.Fprintf(r.log, "catch-up of %d changed bindings: active %v, bulk with start time %v, store scan %v, raw wire %v\n",
		r.scale.catchUp, res.CatchUpActive.Round(time.Millisecond), res.CatchUpBulk.Round(time.Millisecond),
		res.CatchUpStore.Round(time.Millisecond), res.CatchUpRaw.Round(time.Millisecond))
	return nil
}

// activeCatchUp sends an ACTIVELEASEQUERY for relay 0 with
// OPTION_LQ_START_TIME start and reads until the LEASEQUERY-DATA with
// status CatchUpComplete (RFC 7653 section 9.3). It returns the bindings
// received and the time from sending the query to CatchUpComplete.
func activeCatchUp(ctx context.Context, addr string, start uint32) (bindings int, took time.Duration, err error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Minute))
	began := time.Now()
	if _, err := conn.Write(activeCatchUpQuery(start)); err != nil {
		return 0, 0, err
	}
	fr := codec.NewFrameReader(conn, 0)
	var msg codec.Message
	var data codec.ClientData
	for {
		b, err := fr.ReadFrame()
		if err != nil {
			return bindings, 0, fmt.Errorf("after %d bindings: %w", bindings, err)
		}
		if err := msg.Decode(b); err != nil {
			return bindings, 0, fmt.Errorf("message after %d bindings: %w", bindings, err)
		}
		status, ok, err := msg.Options.Status()
		switch {
		case err != nil:
			return bindings, 0, err
		case ok && status.Code == codec.StatusCatchUpComplete:
			return bindings, time.Since(began), nil
		case ok && status.Code != codec.StatusSuccess:
			return bindings, 0, &codec.StatusError{Code: status.Code, Msg: string(status.Message)}
		}
		if body, ok := msg.Options.ClientData(); ok {
			if err := data.Decode(body); err != nil {
				return bindings, 0, fmt.Errorf("OPTION_CLIENT_DATA after %d bindings: %w", bindings, err)
			}
			bindings += len(data.Addrs) + len(data.Prefixes)
		}
	}
}

// activeCatchUpQuery returns a framed ACTIVELEASEQUERY by relay-id 0 with
// OPTION_LQ_START_TIME (RFC 7653 section 6.2.1).
func activeCatchUpQuery(start uint32) []byte {
	b := activeQuery(2, true, 0)
	var msg codec.Message
	if err := msg.Decode(b[codec.FrameHeaderLen:]); err != nil {
		panic(fmt.Sprintf("bench: decoding the ACTIVELEASEQUERY just built: %v", err))
	}
	msg.Options.Add(codec.OptLQStartTime, binary.BigEndian.AppendUint32(nil, start))
	out, err := msg.AppendFrameTo(nil)
	if err != nil {
		panic(fmt.Sprintf("bench: encoding ACTIVELEASEQUERY: %v", err))
	}
	return out
}

// loadBindings applies bindings [first, first+count) in batches.
func loadBindings(ctx context.Context, st *store.Store, first, count int, cltt time.Time) error {
	const batch = 4096
	b := make([]store.Binding, 0, batch)
	for i := first; i < first+count; i++ {
		b = append(b, benchBinding(i, cltt))
		if len(b) == batch || i == first+count-1 {
			if _, err := st.Apply(ctx, b, nil); err != nil {
				return err
			}
			b = b[:0]
		}
	}
	return nil
}

// countIter counts what it yields and closes it.
func countIter(it store.Iterator) (int, error) {
	n := 0
	for it.Next() {
		n++
	}
	return n, it.Close()
}

// bulkQuery returns a framed LEASEQUERY by relay-id 0, with
// OPTION_LQ_START_TIME when withStart is set (RFC 7653 section 6.3.2).
func bulkQuery(start uint32, withStart bool) []byte {
	q := codec.LQQuery{QueryType: codec.QueryByRelayID, LinkAddress: netip.IPv6Unspecified()}
	q.Options.Add(codec.OptRelayID, relayDUID(0))
	data, err := q.AppendTo(nil)
	if err != nil {
		panic(fmt.Sprintf("bench: encoding OPTION_LQ_QUERY: %v", err))
	}
	msg := codec.Message{Type: codec.MsgLeasequery, TransactionID: 1}
	msg.Options.Add(codec.OptClientID, requestorID)
	msg.Options.Add(codec.OptLQQuery, data[codec.OptionHeaderLen:])
	if withStart {
		msg.Options.Add(codec.OptLQStartTime, binary.BigEndian.AppendUint32(nil, start))
	}
	b, err := msg.AppendFrameTo(nil)
	if err != nil {
		panic(fmt.Sprintf("bench: encoding LEASEQUERY: %v", err))
	}
	return b
}

// bulkDump runs one bulk query on a new connection and decodes every
// message. It returns the bindings, the octets received and the time from
// sending the query to LEASEQUERY-DONE.
func bulkDump(ctx context.Context, addr string, start uint32, withStart bool) (bindings int, octets int64, took time.Duration, err error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return 0, 0, 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Minute))
	began := time.Now()
	if _, err := conn.Write(bulkQuery(start, withStart)); err != nil {
		return 0, 0, 0, err
	}
	fr := codec.NewFrameReader(conn, 0)
	var msg codec.Message
	var data codec.ClientData
	for {
		b, err := fr.ReadFrame()
		if err != nil {
			return bindings, octets, 0, fmt.Errorf("after %d bindings: %w", bindings, err)
		}
		octets += int64(len(b) + codec.FrameHeaderLen)
		if err := msg.Decode(b); err != nil {
			return bindings, octets, 0, fmt.Errorf("message after %d bindings: %w", bindings, err)
		}
		if status, ok, _ := msg.Options.Status(); ok && status.Code != codec.StatusSuccess {
			return bindings, octets, 0, &codec.StatusError{Code: status.Code, Msg: string(status.Message)}
		}
		if body, ok := msg.Options.ClientData(); ok {
			if err := data.Decode(body); err != nil {
				return bindings, octets, 0, fmt.Errorf("OPTION_CLIENT_DATA after %d bindings: %w", bindings, err)
			}
			bindings += len(data.Addrs) + len(data.Prefixes)
		}
		switch msg.Type {
		case codec.MsgLeasequeryDone:
			return bindings, octets, time.Since(began), nil
		case codec.MsgLeasequeryReply:
			if _, ok := msg.Options.ClientData(); !ok {
				// A reply without binding data ends a query that matched
				// nothing (RFC 5460 section 5.2.2).
				return bindings, octets, time.Since(began), nil
			}
		case codec.MsgLeasequeryData:
		default:
			return bindings, octets, 0, fmt.Errorf("unexpected %v in a bulk reply", msg.Type)
		}
	}
}

// requestorDump runs the bulk dump with the requestor package and counts
// its Binding events.
func requestorDump(ctx context.Context, addr string) (int, error) {
	conn, err := requestor.Dial(ctx, requestor.Config{Server: addr, ClientID: requestorID})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	n := 0
	err = conn.Bulk(ctx, requestor.Query{Type: codec.QueryByRelayID, RelayID: relayDUID(0)}, func(ev requestor.Event) error {
		if _, ok := ev.(requestor.Binding); ok {
			n++
		}
		return nil
	})
	return n, err
}

// nearestFrameSize returns the valid probe frame size closest to mean.
func nearestFrameSize(mean float64) int {
	size := int(mean + 0.5)
	if size < minFrameSize+relayDataOverhead {
		if size-minFrameSize < minFrameSize+relayDataOverhead-size {
			return minFrameSize
		}
		return minFrameSize + relayDataOverhead
	}
	return size
}

// rawWire writes count pre-encoded frames of frameSize octets over one
// loopback TCP connection in 64 KiB writes, and reads and decodes them on
// the other end like bulkDump does. It returns frames per second.
func rawWire(ctx context.Context, count, frameSize int) (float64, error) {
	fb, err := newFrameBuilder(frameSize)
	if err != nil {
		return 0, err
	}
	// Frames are encoded before the clock starts: one chunk, sent again
	// and again, as a server with every frame ready would.
	perChunk := max((64<<10)/frameSize, 1)
	var chunk []byte
	for i := range perChunk {
		chunk = fb.appendFrame(chunk, allKeys, int64(i))
	}

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	sent := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			sent <- err
			return
		}
		defer conn.Close()
		for left := count; left > 0; left -= perChunk {
			n := min(left, perChunk)
			if _, err := conn.Write(chunk[:n*frameSize]); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()

	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp4", ln.Addr().String())
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Minute))
	began := time.Now()
	fr := codec.NewFrameReader(conn, 0)
	var msg codec.Message
	var data codec.ClientData
	for i := range count {
		b, err := fr.ReadFrame()
		if err != nil {
			return 0, fmt.Errorf("frame %d: %w", i, err)
		}
		if err := msg.Decode(b); err != nil {
			return 0, err
		}
		if body, ok := msg.Options.ClientData(); ok {
			if err := data.Decode(body); err != nil {
				return 0, err
			}
		}
	}
	took := time.Since(began)
	if err := <-sent; err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	return float64(count) / took.Seconds(), nil
}
