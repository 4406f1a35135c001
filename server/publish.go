package server

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/fanout"
	"github.com/alqd/alqd/store"
)

// ActiveStore is the part of the binding store that Active Leasequery
// uses on top of Store. *store.Store implements it, and New requires it
// when Config.Active is set.
type ActiveStore interface {
	Store

	// Subscribe registers fn for every committed change; the store calls it
	// after the change is synced, in Seq order, on its writer goroutine.
	Subscribe(fn func(committed []store.Binding))
	// LastSeq returns the Seq of the last synced change.
	LastSeq() uint64
	// ChangedSince yields each binding whose last change is above after,
	// once, in its current state, in Seq order.
	ChangedSince(after uint64) store.Iterator
	// Floor returns the history floor: scans from below it lack the
	// released and expired bindings that Trim removed.
	Floor() (t time.Time, seq uint64)
}

// Body views of an update: Update.Bodies has one OPTION_CLIENT_DATA per
// view, and each connection picks the one its ORO and the deny list allow.
const (
	viewPlain = 0 // without OPTION_LQ_RELAY_DATA
	viewRelay = 1 // with OPTION_LQ_RELAY_DATA when the binding was relayed
	viewCount = 2
)

// maxBodyLen is the largest OPTION_CLIENT_DATA an update may carry: a
// LEASEQUERY-DATA holds the header, an optional OPTION_LQ_BASE_TIME and the
// body, and must fit in 65535 octets.
const maxBodyLen = codec.MaxMessageLen - codec.HeaderLen - baseTimeOptionLen

// baseTimeOptionLen is the size of an encoded OPTION_LQ_BASE_TIME.
const baseTimeOptionLen = codec.OptionHeaderLen + 4

// errHistoryTrimmed is the error of a store scan that starts below the
// history floor: the released and expired bindings trimmed from that range
// are missing, so the connection gets DataMissing (RFC 7653 section 8.4).
var errHistoryTrimmed = errors.New("server: the history below the start of the scan was trimmed")

// updateEncoder turns bindings into fanout updates: the OPTION_CLIENT_DATA
// bodies every Active Leasequery connection shares, and the keys the filter
// index matches. It is read-only after creation, so the store's writer and
// every event loop share one.
//
// A body is encoded once, against the whole second of the binding's
// ChangeTime: its lifetimes are those remaining then and its OPTION_CLT_TIME
// is counted to then. A connection that sends it in a later second moves
// those values on by the seconds in between (appendAged), so that every
// message stays consistent with its OPTION_LQ_BASE_TIME, the server's time
// when the message is sent (RFC 7653 section 6.3.1).
type updateEncoder struct {
	view  view // cltTime from the deny list; relayData is set per body
	relay bool // OPTION_LQ_RELAY_DATA may be sent at all
}

func newUpdateEncoder(p *policy) *updateEncoder {
	return &updateEncoder{
		view:  view{cltTime: !p.deny.has(codec.OptCLTTime)},
		relay: !p.deny.has(codec.OptLQRelayData),
	}
}

// encodedAt returns the time the body of a binding changed at t is encoded
// against: t cut down to a whole second.
func encodedAt(t time.Time) time.Time { return t.Truncate(time.Second) }

// appendBodies appends the bodies of the binding in group, a one-element
// slice, to arena and sets bodies[viewPlain] and bodies[viewRelay], which
// share one encoding when the binding was not relayed or relay data is
// denied. It returns arena unchanged on error.
func (e *updateEncoder) appendBodies(arena []byte, group []store.Binding, bodies [][]byte) ([]byte, error) {
	bd := &group[0]
	at := encodedAt(bd.ChangeTime)
	if bd.CLTT.IsZero() {
		// Without a CLTT, appendClientData would report the granted
		// lifetimes at any time, which appendAged cannot reproduce. The
		// change is when the server last heard of the client.
		withCLTT := [1]store.Binding{*bd}
		withCLTT[0].CLTT = bd.ChangeTime
		group = withCLTT[:]
	}

	start := len(arena)
	out, err := appendClientData(arena, group, e.view, at)
	if err != nil {
		return arena, err
	}
	if len(out)-start > maxBodyLen {
		return arena, fmt.Errorf("server: OPTION_CLIENT_DATA of %v is %d octets, over the %d a LEASEQUERY-DATA can carry", bd.Prefix, len(out)-start, maxBodyLen)
	}
	bodies[viewPlain] = out[start:len(out):len(out)]
	bodies[viewRelay] = bodies[viewPlain]
	if !e.relay || len(bd.RelayMessage) == 0 {
		return out, nil
	}

	start = len(out)
	withRelay := e.view
	withRelay.relayData = true
	out2, err := appendClientData(out, group, withRelay, at)
	if err != nil || len(out2)-start > maxBodyLen {
		// The binding still goes out, without its relay data.
		return out, nil
	}
	bodies[viewRelay] = out2[start:len(out2):len(out2)]
	return out2, nil
}

// updateLink returns the link-address an update carries: bindings recorded
// without one are on :: (the store's link-address index does the same).
func updateLink(bd *store.Binding) netip.Addr {
	if bd.LinkAddress.IsValid() {
		return bd.LinkAddress
	}
	return netip.IPv6Unspecified()
}

// appendKeyBytes appends the identity keys of bd (client DUID, relay-id,
// remote-id) to kb and records where each ends, for keysFrom.
func appendKeyBytes(kb []byte, ends []int, bd *store.Binding) ([]byte, []int) {
	kb = append(kb, bd.ClientID...)
	ends = append(ends, len(kb))
	kb = append(kb, bd.RelayID...)
	ends = append(ends, len(kb))
	kb = append(kb, bd.RemoteID...)
	ends = append(ends, len(kb))
	return kb, ends
}

// keysFrom appends to keys the keys whose bytes appendKeyBytes put in all
// between begin and ends[0..2]; the strings share all, so that a commit of n
// bindings costs one string allocation instead of up to 3n.
func keysFrom(keys []fanout.FilterKey, all string, begin int, ends []int) []fanout.FilterKey {
	kinds := [3]fanout.FilterKind{fanout.FilterByClientID, fanout.FilterByRelayID, fanout.FilterByRemoteID}
	for i, kind := range kinds {
		if ends[i] > begin {
			keys = append(keys, fanout.FilterKey{Kind: kind, Value: all[begin:ends[i]]})
		}
		begin = ends[i]
	}
	return keys
}

// newUpdate encodes the binding in group, a one-element slice, into a fresh
// Update, for store scans.
func (e *updateEncoder) newUpdate(group []store.Binding) (*fanout.Update, error) {
	bd := &group[0]
	u := &fanout.Update{
		Seq:        bd.Seq,
		ChangeTime: bd.ChangeTime,
		Prefix:     bd.Prefix,
		Link:       updateLink(bd),
		Bodies:     make([][]byte, viewCount),
	}
	if _, err := e.appendBodies(make([]byte, 0, 256), group, u.Bodies); err != nil {
		return nil, err
	}
	kb, ends := appendKeyBytes(nil, make([]int, 0, 3), bd)
	u.Keys = keysFrom(make([]fanout.FilterKey, 0, 3), string(kb), 0, ends)
	return u, nil
}

// publisher carries committed changes from the store to the ring. Its
// committed method is the store's subscriber: it runs on the store's writer
// goroutine, the ring's single producer.
type publisher struct {
	// ring is nil until the ring exists: the store subscription starts
	// first, so that no commit falls between the two (see startActive).
	ring    atomic.Pointer[fanout.Ring]
	enc     *updateEncoder
	metrics *Metrics

	// stopped turns committed into a no-op once the server has stopped;
	// the store has no way to remove a subscriber.
	stopped atomic.Bool
}

// committed encodes every change of one commit group once and publishes
// them to the ring in one call. Changes at or below the ring's LastSeq were
// committed before the ring was created and are already in the store.
//
// hot path: once per commit group, on the store's writer goroutine. It
// allocates a fixed number of slices per group, not per binding.
func (p *publisher) committed(bs []store.Binding) {
	ring := p.ring.Load()
	if ring == nil || p.stopped.Load() {
		return
	}
	last := ring.LastSeq()
	for len(bs) > 0 && bs[0].Seq <= last {
		bs = bs[1:]
	}
	if len(bs) == 0 {
		return
	}

	updates := make([]fanout.Update, len(bs))
	ptrs := make([]*fanout.Update, 0, len(bs))
	bodies := make([][]byte, viewCount*len(bs))
	arena := make([]byte, 0, 160*len(bs))

	// Key bytes of the whole group, converted to one string below.
	kb := make([]byte, 0, 40*len(bs))
	ends := make([]int, 0, 3*len(bs))
	for i := range bs {
		kb, ends = appendKeyBytes(kb, ends, &bs[i])
	}
	all := string(kb)
	keys := make([]fanout.FilterKey, 0, 3*len(bs))

	begin := 0
	for i := range bs {
		bd := &bs[i]
		e := ends[3*i : 3*i+3]
		keyStart := len(keys)
		keys = keysFrom(keys, all, begin, e)
		begin = e[2]

		u := &updates[i]
		u.Bodies = bodies[viewCount*i : viewCount*i+viewCount : viewCount*i+viewCount]
		var err error
		if arena, err = p.enc.appendBodies(arena, bs[i:i+1], u.Bodies); err != nil {
			// A binding that cannot be encoded cannot be sent; the Seq gap
			// it leaves is allowed by the ring.
			p.metrics.encodeErrors.Inc()
			continue
		}
		u.Seq, u.ChangeTime = bd.Seq, bd.ChangeTime
		u.Prefix, u.Link = bd.Prefix, updateLink(bd)
		u.Keys = keys[keyStart:len(keys):len(keys)]
		ptrs = append(ptrs, u)
	}
	ring.Publish(ptrs...)
}

// changeSource is the fanout.Source of one event loop: the store's
// last-change index, encoded the way the publisher encodes commits.
type changeSource struct {
	st  ActiveStore
	enc *updateEncoder
}

// ChangedSince opens a scan of the bindings changed after the Seq after.
// A scan that starts below the history floor fails with errHistoryTrimmed
// before it yields anything, so that the connection hears DataMissing
// (RFC 7653 section 8.4) instead of an incomplete catch-up.
func (cs *changeSource) ChangedSince(after uint64, f fanout.Filter) fanout.Iterator {
	snapshot := cs.st.LastSeq()
	it := cs.st.ChangedSince(after)
	// The store records a raised floor before it publishes the view without
	// the trimmed bindings, so reading the floor after opening the scan
	// cannot miss a trim that the scan's view reflects.
	if _, floorSeq := cs.st.Floor(); after < floorSeq {
		_ = it.Close()
		return &changeIter{err: fmt.Errorf("%w: scan after Seq %d, floor at Seq %d", errHistoryTrimmed, after, floorSeq)}
	}
	return &changeIter{it: it, enc: cs.enc, filter: f, snapshot: snapshot}
}

// maxSkipped caps the bindings a filtered scan passes over in one Next, so
// that one call stays short on the event loop however few bindings match.
// After that many, Next yields a placeholder update that matches no filter.
const maxSkipped = 64

// changeIter adapts a store.Iterator to fanout.Iterator.
type changeIter struct {
	it       store.Iterator
	enc      *updateEncoder
	filter   fanout.Filter
	snapshot uint64
	cur      *fanout.Update
	one      [1]store.Binding // the binding being encoded, as a group of one
	err      error
}

// Next advances to the next binding the filter may select, encoding only
// those.
func (ci *changeIter) Next() bool {
	if ci.err != nil || ci.it == nil {
		return false
	}
	ci.cur = nil
	for skipped := 0; ci.it.Next(); skipped++ {
		bd := ci.it.Binding()
		if !matchesBinding(ci.filter, bd) {
			if skipped < maxSkipped {
				continue
			}
			// Placeholder: invalid prefix and link, no keys, no bodies.
			ci.cur = &fanout.Update{Seq: bd.Seq, ChangeTime: bd.ChangeTime}
			return true
		}
		ci.one[0] = *bd
		u, err := ci.enc.newUpdate(ci.one[:])
		if err != nil {
			ci.cur = &fanout.Update{Seq: bd.Seq, ChangeTime: bd.ChangeTime}
			return true
		}
		ci.cur = u
		return true
	}
	return false
}

func (ci *changeIter) Update() *fanout.Update { return ci.cur }
func (ci *changeIter) SnapshotSeq() uint64    { return ci.snapshot }

func (ci *changeIter) Err() error {
	if ci.err != nil {
		return ci.err
	}
	if ci.it == nil {
		return nil
	}
	return ci.it.Err()
}

func (ci *changeIter) Close() error {
	if ci.it == nil {
		return nil
	}
	err := ci.it.Close()
	ci.it = nil
	return err
}

// matchesBinding reports whether f selects bd, as fanout.Filter.Match does
// for the update encoded from bd, without encoding it.
func matchesBinding(f fanout.Filter, bd *store.Binding) bool {
	link := updateLink(bd)
	if f.Link.IsValid() && !f.Link.IsUnspecified() && link.As16() != f.Link.As16() {
		return false
	}
	v := f.Key.Value
	switch f.Key.Kind {
	case fanout.FilterAll:
		return true
	case fanout.FilterByAddress:
		if len(v) != 16 {
			return false
		}
		var a [16]byte
		copy(a[:], v)
		return bd.Prefix.Contains(netip.AddrFrom16(a))
	case fanout.FilterByLinkAddress:
		a := link.As16()
		return string(a[:]) == v
	case fanout.FilterByClientID:
		return string(bd.ClientID) == v
	case fanout.FilterByRelayID:
		return len(bd.RelayID) > 0 && string(bd.RelayID) == v
	case fanout.FilterByRemoteID:
		return len(bd.RemoteID) > 0 && string(bd.RemoteID) == v
	}
	return false
}

// seqBefore returns the cursor of a catch-up from start (RFC 7653 section
// 9.3): the Seq just before the first change at or after start, so that a
// subscriber positioned there receives every binding changed since then.
// missing reports that the history no longer reaches back to start. The
// store assigns ChangeTime in commit order, so every change with a larger
// Seq is at or after start too.
func seqBefore(st ActiveStore, start time.Time) (after uint64, missing bool, err error) {
	last := st.LastSeq()
	it := st.Changed(start, time.Time{})
	after = last
	if it.Next() {
		after = it.Binding().Seq - 1
	}
	if cerr := it.Close(); cerr != nil {
		return 0, false, cerr
	}

	// As in changeSource.ChangedSince, the floor is read after the scan.
	floorTime, floorSeq := st.Floor()
	missing = start.Before(floorTime) || after < floorSeq
	return after, missing, nil
}
