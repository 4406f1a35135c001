package fanout

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// index finds the subscribers an update may match without visiting the
// others. Unfiltered subscribers are in a list, and identity and
// link-address subscribers in one map per kind keyed by the raw key bytes.
// Address subscribers are in a list sorted by address, so the subscribers
// inside a delegated prefix are one contiguous run found by binary search.
//
// Subscribers stay indexed in every state; the walk skips those not live.
type index struct {
	unfiltered []*Subscriber
	keys       [kindCount]map[string][]*Subscriber
	addrs      []addrEntry
}

type addrEntry struct {
	addr addr128
	s    *Subscriber
}

func (x *index) add(s *Subscriber) {
	switch k := s.filter.Key; k.Kind {
	case FilterAll:
		s.slot = len(x.unfiltered)
		x.unfiltered = append(x.unfiltered, s)
	case FilterByAddress:
		i := x.firstAddr(s.addr)
		for i < len(x.addrs) && x.addrs[i].addr == s.addr {
			i++
		}
		x.addrs = slices.Insert(x.addrs, i, addrEntry{addr: s.addr, s: s})
	default:
		if x.keys[k.Kind] == nil {
			x.keys[k.Kind] = make(map[string][]*Subscriber)
		}
		list := x.keys[k.Kind][k.Value]
		s.slot = len(list)
		x.keys[k.Kind][k.Value] = append(list, s)
	}
}

func (x *index) remove(s *Subscriber) {
	switch k := s.filter.Key; k.Kind {
	case FilterAll:
		x.unfiltered = swapRemove(x.unfiltered, s.slot)
	case FilterByAddress:
		for i := x.firstAddr(s.addr); i < len(x.addrs) && x.addrs[i].addr == s.addr; i++ {
			if x.addrs[i].s == s {
				x.addrs = slices.Delete(x.addrs, i, i+1)
				break
			}
		}
	default:
		list := swapRemove(x.keys[k.Kind][k.Value], s.slot)
		if len(list) == 0 {
			delete(x.keys[k.Kind], k.Value)
		} else {
			x.keys[k.Kind][k.Value] = list
		}
	}
}

// swapRemove removes list[i] by moving the last element into its place and
// updating that element's slot.
func swapRemove(list []*Subscriber, i int) []*Subscriber {
	last := len(list) - 1
	list[i] = list[last]
	list[i].slot = i
	list[last] = nil
	return list[:last]
}

// firstAddr returns the position of the first address subscriber at or
// above a.
func (x *index) firstAddr(a addr128) int {
	i, _ := slices.BinarySearchFunc(x.addrs, a, func(e addrEntry, t addr128) int {
		return e.addr.compare(t)
	})
	return i
}

// collect offers u to every subscriber indexed under a key u carries: the
// identity keys in u.Keys, u.Link, and the addresses inside u.Prefix. A
// subscriber can be offered u more than once when u repeats a key; offer
// deduplicates.
//
// hot path: once per walked update per group.
func (g *Group) collect(u *Update) {
	x := &g.index
	for _, k := range u.Keys {
		if k.Kind == FilterByClientID || k.Kind == FilterByRelayID || k.Kind == FilterByRemoteID {
			for _, s := range x.keys[k.Kind][k.Value] {
				g.offer(s, u)
			}
		}
	}

	if u.Link.IsValid() && len(x.keys[FilterByLinkAddress]) > 0 {
		b := u.Link.As16()
		for _, s := range x.keys[FilterByLinkAddress][string(b[:])] {
			g.offer(s, u)
		}
	}

	if u.Prefix.IsValid() && len(x.addrs) > 0 {
		lo, hi := prefixRange(u.Prefix)
		for i := x.firstAddr(lo); i < len(x.addrs) && !hi.less(x.addrs[i].addr); i++ {
			g.offer(x.addrs[i].s, u)
		}
	}
}

// addr128 is an IPv6 address (IPv4 as IPv4-mapped) as a big-endian 128-bit
// integer, for ordering and range tests.
type addr128 struct{ hi, lo uint64 }

func toAddr128(a netip.Addr) addr128 {
	b := a.As16()
	return addr128{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
}

func (a addr128) less(b addr128) bool {
	return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo)
}

func (a addr128) compare(b addr128) int {
	switch {
	case a.less(b):
		return -1
	case b.less(a):
		return 1
	}
	return 0
}

// prefixRange returns the first and last address of p. IPv4 prefixes are
// taken as their IPv4-mapped IPv6 range.
func prefixRange(p netip.Prefix) (lo, hi addr128) {
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	lo = toAddr128(p.Masked().Addr())
	hi = lo
	if bits < 64 {
		hi.hi |= ^uint64(0) >> bits
		hi.lo = ^uint64(0)
	} else {
		hi.lo |= ^uint64(0) >> (bits - 64) // a shift by 64 (a /128) yields 0
	}
	return lo, hi
}
