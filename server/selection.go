package server

import (
	"bytes"
	"net/netip"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/store"
)

// Store is what the server reads from the binding store; *store.Store
// implements it. Every method must be safe for concurrent use, because bulk
// queries and UDP queries run on their own goroutines.
type Store interface {
	ServerDUID() []byte
	LookupAddress(addr netip.Addr) (store.Binding, bool, error)
	ByClientID(duid []byte, link netip.Addr) store.Iterator
	ByRelayID(id []byte, link netip.Addr) store.Iterator
	ByLinkAddress(link netip.Addr) store.Iterator
	ByRemoteID(id []byte, link netip.Addr) store.Iterator
	Changed(start, end time.Time) store.Iterator
}

// selection is the store scan that answers one request, with the checks a
// binding from it must pass. It belongs to the goroutine running the query.
type selection struct {
	it store.Iterator

	// Key filter, set when it is a history scan (store.Changed) that yields
	// bindings of every key.
	byKey bool
	query codec.QueryType
	link  netip.Addr
	key   []byte

	// Time filter, set when it is an index scan and the request has a time
	// range: ChangeTime must lie in [from, until).
	byTime      bool
	from, until time.Time

	// includeEnded reports released, expired and declined bindings (with
	// zero lifetimes); plain queries report only bindings still held.
	includeEnded bool
	now          time.Time
}

// emptyIterator yields nothing; it answers a query whose key matches no
// binding without a store scan.
type emptyIterator struct{}

func (emptyIterator) Next() bool              { return false }
func (emptyIterator) Binding() *store.Binding { return nil }
func (emptyIterator) Err() error              { return nil }
func (emptyIterator) Close() error            { return nil }

// openSelection starts the scan for r. Plain queries use the index of their
// query type. With RFC 7653 start or end times, the per-client queries
// (address, client-id) still scan their index, which holds a handful of
// bindings, and filter by change time; the others scan the change history
// (store.Changed) for the time range and filter by key, because the range
// is usually much smaller than a link's or relay's binding set.
func openSelection(src Store, r *request, now time.Time, m *Metrics) (*selection, error) {
	s := &selection{includeEnded: r.timeRange(), now: now}
	link := r.query.LinkAddress

	if r.timeRange() {
		// NOTE: a start time below the store's history floor is answered
		// like any other, without the released bindings that Trim removed.
		// RFC 7653 section 8.4.1 sends a requestor here after DataMissing,
		// with exactly such a start time, so refusing it would leave no way
		// to recover.
		s.from, s.until = r.window(now)
	}

	switch r.query.QueryType {
	case codec.QueryByAddress:
		s.byTime = r.timeRange()
		began := time.Now()
		bd, found, err := src.LookupAddress(r.addr)
		m.observeStore("lookup_address", began)
		if err != nil {
			return nil, err
		}
		if !found || !s.wanted(&bd, false) {
			s.it = emptyIterator{}
			return s, nil
		}
		// RFC 5007 section 4.3.3: the reply holds every binding of the
		// client that holds the address, on that link.
		s.it = src.ByClientID(bd.ClientID, bd.LinkAddress)
		return s, nil
	case codec.QueryByClientID:
		s.it = src.ByClientID(r.key, link)
		s.byTime = r.timeRange()
		return s, nil
	}

	if r.timeRange() {
		end := s.until
		if !end.IsZero() {
			end = end.Add(-time.Nanosecond) // store.Changed includes its end
		}
		s.it = src.Changed(s.from, end)
		s.byKey = true
		s.query, s.link, s.key = r.query.QueryType, link, r.key
		return s, nil
	}
	switch r.query.QueryType {
	case codec.QueryByRelayID:
		s.it = src.ByRelayID(r.key, link)
	case codec.QueryByLinkAddress:
		s.it = src.ByLinkAddress(link)
	case codec.QueryByRemoteID:
		s.it = src.ByRemoteID(r.key, link)
	default:
		// parse lets only the five known types through.
		panic("server: selection for unchecked query-type " + r.query.QueryType.String())
	}
	return s, nil
}

// window converts the request's time range to [from, until): RFC 7653 times
// are whole seconds, so the end second is included whole.
func (r *request) window(now time.Time) (from, until time.Time) {
	if r.hasStart {
		from = codec.TimeFromDHCPNear(r.start, now)
	}
	if r.hasEnd {
		until = codec.TimeFromDHCPNear(r.end, now).Add(time.Second)
	}
	return from, until
}

// next advances to the next binding the request selects.
//
// hot path: no allocation.
func (s *selection) next() (*store.Binding, bool) {
	for s.it.Next() {
		bd := s.it.Binding()
		if s.wanted(bd, true) {
			return bd, true
		}
	}
	return nil, false
}

// wanted applies the key, time and state checks; keyed is false for the
// address lookup, whose binding needs no key check.
func (s *selection) wanted(bd *store.Binding, keyed bool) bool {
	if keyed && s.byKey && !s.matchesKey(bd) {
		return false
	}
	if s.byTime {
		if bd.ChangeTime.Before(s.from) || (!s.until.IsZero() && !bd.ChangeTime.Before(s.until)) {
			return false
		}
	}
	if s.includeEnded {
		return true
	}
	_, valid := remainingLifetimes(bd, s.now)
	return valid > 0
}

func (s *selection) matchesKey(bd *store.Binding) bool {
	linkOK := !s.link.IsValid() || s.link.IsUnspecified() || bd.LinkAddress == s.link
	switch s.query {
	case codec.QueryByRelayID:
		return linkOK && bytes.Equal(bd.RelayID, s.key)
	case codec.QueryByLinkAddress:
		return bd.LinkAddress == s.link
	case codec.QueryByRemoteID:
		return linkOK && bytes.Equal(bd.RemoteID, s.key)
	}
	return false
}

// close closes the scan and returns its error.
func (s *selection) close() error { return s.it.Close() }
