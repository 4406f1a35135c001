package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/alqd/alqd/internal/keatest"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/store"
)

// clockSlack is the tolerance, in seconds, for times that alqd and Kea
// both state: alqd sends lifetimes and OPTION_CLT_TIME as whole seconds
// relative to a base-time that is itself truncated to the second.
const clockSlack = 1

// infiniteEnd is the end time of a lifetime of 0xffffffff.
const infiniteEnd = math.MaxInt64

// bindingKey identifies a binding the way Kea and alqd both do: its type
// and its address (as a /128) or delegated prefix.
type bindingKey struct {
	Type   requestor.BindingType
	Prefix netip.Prefix
}

func (k bindingKey) String() string { return k.Type.String() + " " + k.Prefix.String() }

// observed is one binding as a requestor received it, with every time
// converted to Unix seconds in the server's clock.
type observed struct {
	Key      bindingKey
	ClientID []byte
	Ended    bool

	// Base is the message's OPTION_LQ_BASE_TIME. ValidEnd and PreferredEnd
	// are Base plus the remaining lifetimes (infiniteEnd for 0xffffffff);
	// CLTT is Base minus OPTION_CLT_TIME when HasCLTT is set.
	Base         int64
	ValidEnd     int64
	PreferredEnd int64
	CLTT         int64
	HasCLTT      bool

	// Relay information from OPTION_LQ_RELAY_DATA, decoded from the relay
	// closest to the client.
	Relayed     bool
	Peer        netip.Addr // peer-address of OPTION_LQ_RELAY_DATA
	Link        netip.Addr
	RelayID     []byte
	RemoteID    []byte // enterprise number (4 octets) and remote-id
	InterfaceID []byte

	Source  requestor.Source
	CatchUp bool
}

// observe converts a Binding event. It fails when the message had no
// OPTION_LQ_BASE_TIME, which every query of these tests asks for.
func observe(b requestor.Binding) (observed, error) {
	if !b.HasBaseTime {
		return observed{}, fmt.Errorf("%s binding %v arrived in %s without OPTION_LQ_BASE_TIME, which the query asked for",
			b.Source, bindingAddr(b), b.Type)
	}
	o := observed{
		ClientID: bytes.Clone(b.ClientID),
		Ended:    b.Ended(),
		Base:     b.ServerTime().Unix(),
		Source:   b.Source,
		CatchUp:  b.CatchUp,
	}
	o.Key = bindingKey{Type: b.Type, Prefix: bindingAddr(b)}
	o.ValidEnd = lifetimeEnd(o.Base, b.ValidLifetime)
	o.PreferredEnd = lifetimeEnd(o.Base, b.PreferredLifetime)
	if b.HasCLTTime {
		o.CLTT, o.HasCLTT = o.Base-int64(b.CLTTime), true
	}
	if b.HasRelayData {
		o.Relayed = true
		o.Peer = b.RelayPeer
		o.Link = b.LinkAddress
		o.RelayID = bytes.Clone(b.RelayID)
		o.InterfaceID = bytes.Clone(b.InterfaceID)
		if b.HasRemoteID {
			o.RemoteID = binary.BigEndian.AppendUint32(nil, b.RemoteID.EnterpriseNumber)
			o.RemoteID = append(o.RemoteID, b.RemoteID.ID...)
		}
	}
	return o, nil
}

// bindingAddr returns the address of an IA_NA or IA_TA binding as a /128,
// or the prefix of an IA_PD binding.
func bindingAddr(b requestor.Binding) netip.Prefix {
	if b.Type == requestor.TypePD {
		return b.Prefix
	}
	return netip.PrefixFrom(b.Addr, 128)
}

func lifetimeEnd(base int64, lifetime uint32) int64 {
	if lifetime == requestor.Infinity {
		return infiniteEnd
	}
	return base + int64(lifetime)
}

// keaSnapshot is every lease Kea held at one moment (lease6-get-all).
type keaSnapshot struct {
	leases map[bindingKey]keatest.Lease
	// maxCLTT is the latest CLTT of each client (by DUID) over its leases:
	// alqd sends one OPTION_CLT_TIME per OPTION_CLIENT_DATA, the newest of
	// the bindings it groups there (RFC 5007 section 4.1.2.3).
	maxCLTT map[string]int64
}

func newKeaSnapshot(leases []keatest.Lease) (keaSnapshot, error) {
	s := keaSnapshot{leases: make(map[bindingKey]keatest.Lease, len(leases)), maxCLTT: make(map[string]int64)}
	for _, l := range leases {
		k, err := keaKey(l)
		if err != nil {
			return keaSnapshot{}, err
		}
		if _, dup := s.leases[k]; dup {
			return keaSnapshot{}, fmt.Errorf("lease6-get-all returned %s twice", k)
		}
		s.leases[k] = l
		if c, ok := s.maxCLTT[string(l.DUID)]; !ok || l.CLTT > c {
			s.maxCLTT[string(l.DUID)] = l.CLTT
		}
	}
	return s, nil
}

// directClients returns the DUIDs of the clients that have a lease in Kea,
// or a binding in view, without relay information, sorted and without
// repeats. view may be nil.
func (s keaSnapshot) directClients(view map[bindingKey]observed) [][]byte {
	seen := make(map[string]bool)
	var duids [][]byte
	add := func(duid []byte) {
		if !seen[string(duid)] {
			seen[string(duid)] = true
			duids = append(duids, duid)
		}
	}
	for _, l := range s.leases {
		if len(l.Relays) == 0 {
			add(l.DUID)
		}
	}
	for _, o := range view {
		if !o.Relayed {
			add(o.ClientID)
		}
	}
	slices.SortFunc(duids, bytes.Compare)
	return duids
}

func keaKey(l keatest.Lease) (bindingKey, error) {
	var typ requestor.BindingType
	switch l.Type {
	case keatest.TypeNA:
		typ = requestor.TypeNA
	case keatest.TypeTA:
		typ = requestor.TypeTA
	case keatest.TypePD:
		typ = requestor.TypePD
	default:
		return bindingKey{}, fmt.Errorf("Kea lease %s has unknown type %v", l.Address, l.Type)
	}
	return bindingKey{Type: typ, Prefix: l.Prefix()}, nil
}

// keaRelay returns the relay closest to the client, the one whose options
// alqd stores and a requestor decodes, or nil for a direct client.
func keaRelay(l keatest.Lease) *keatest.RelayInfo {
	if len(l.Relays) == 0 {
		return nil
	}
	return &l.Relays[len(l.Relays)-1]
}

// leaseEnd returns when Kea's lease runs out, in Unix seconds.
func leaseEnd(l keatest.Lease) int64 { return lifetimeEnd(l.CLTT, l.ValidLifetime) }

// assignedAt reports whether Kea's lease is assigned and still valid more
// than clockSlack after the Unix second at, so that a reply with base-time
// at must report it active. alqd counts lifetimes down from CLTT, so it
// reports a lease whose lifetime ran out as ended before Kea's reclaim
// timer writes the expiry.
func assignedAt(l keatest.Lease, at int64) bool {
	return l.State == keatest.StateDefault && leaseEnd(l) > at+clockSlack
}

// compareObserved lists the differences between what a requestor received
// for a key and the lease Kea holds for it; empty means they agree.
func (s keaSnapshot) compareObserved(o observed, l keatest.Lease) []string {
	var diffs []string
	add := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }

	if !bytes.Equal(o.ClientID, l.DUID) {
		add("DUID %x, Kea %x", o.ClientID, l.DUID)
	}
	s.compareState(o, l, add)
	if o.HasCLTT {
		// The newest CLTT of the client's group is sent, so it is at least
		// this lease's CLTT and at most the client's latest.
		if o.CLTT < l.CLTT-clockSlack || o.CLTT > s.maxCLTT[string(l.DUID)]+clockSlack {
			add("CLTT %s, Kea %s (the client's latest %s)", unixString(o.CLTT), unixString(l.CLTT), unixString(s.maxCLTT[string(l.DUID)]))
		}
	} else if !o.Ended {
		add("no OPTION_CLT_TIME for an active binding, Kea CLTT %s", unixString(l.CLTT))
	}
	compareRelay(o, l.Relays, add)
	return diffs
}

// compareState checks ended against Kea's state, and the lifetimes of an
// active binding against Kea's CLTT plus its lifetimes.
func (s keaSnapshot) compareState(o observed, l keatest.Lease, add func(string, ...any)) {
	switch {
	case l.State == keatest.StateExpiredReclaimed:
		if !o.Ended {
			add("active (valid until %s), Kea has reclaimed it (state %d)", unixString(o.ValidEnd), l.State)
		}
		return
	case l.State != keatest.StateDefault:
		add("Kea state %d, which these tests never produce", l.State)
		return
	}

	if o.Ended {
		if assignedAt(l, o.Base) {
			add("ended at base-time %s, Kea holds it valid until %s", unixString(o.Base), unixString(leaseEnd(l)))
		}
		return
	}
	wantValid := lifetimeEnd(l.CLTT, l.ValidLifetime)
	if !withinSlack(o.ValidEnd, wantValid) {
		add("valid until %s, Kea %s", unixString(o.ValidEnd), unixString(wantValid))
	}
	// A preferred lifetime that ran out is sent as 0, so it ends at Base.
	wantPreferred := max(lifetimeEnd(l.CLTT, l.PreferredLifetime), o.Base)
	if !withinSlack(o.PreferredEnd, wantPreferred) {
		add("preferred until %s, Kea %s", unixString(o.PreferredEnd), unixString(wantPreferred))
	}
}

// compareRelay checks the relay data of o against Kea's relay chain
// (closest to the server first). The link-address and the identifiers come
// from the relay closest to the client; the peer-address is that of the
// outermost Relay-forward, because Kea does not store the address it
// received the message from.
func compareRelay(o observed, relays []keatest.RelayInfo, add func(string, ...any)) {
	if len(relays) == 0 {
		if o.Relayed {
			add("relay data with link %s, Kea has no relay for this lease", o.Link)
		}
		return
	}
	r := &relays[len(relays)-1]
	if !o.Relayed {
		add("no OPTION_LQ_RELAY_DATA, Kea has relay link %s", r.Link)
		return
	}
	if o.Peer != relays[0].Peer {
		add("relay peer-address %s, Kea %s", o.Peer, relays[0].Peer)
	}
	if o.Link != r.Link {
		add("link-address %s, Kea %s", o.Link, r.Link)
	}
	if !bytes.Equal(o.RelayID, r.RelayID) {
		add("relay-id %x, Kea %x", o.RelayID, r.RelayID)
	}
	if !bytes.Equal(o.RemoteID, r.RemoteID) {
		add("remote-id %x, Kea %x", o.RemoteID, r.RemoteID)
	}
	if !bytes.Equal(o.InterfaceID, r.InterfaceID) {
		add("interface-id %q, Kea %q", o.InterfaceID, r.InterfaceID)
	}
}

func withinSlack(got, want int64) bool {
	if got == infiniteEnd || want == infiniteEnd {
		return got == want
	}
	return got >= want-clockSlack && got <= want+clockSlack
}

// viewCheck is the outcome of comparing a requestor's bindings with Kea.
type viewCheck struct {
	Expected  int // Kea leases the view had to contain
	Active    int // active on both sides, fields equal
	EndedHeld int // ended in the view, reclaimed or run out in Kea, fields equal
	EndedGone int // ended in the view, absent from Kea (released or flushed)
	Problems  []string
}

// compareView compares a requestor's latest binding per key with Kea. Every
// Kea lease that want selects must be in the view with equal fields; a
// binding in the view that is active must be such a lease; an ended one
// must be absent from Kea or no longer assigned there. With activeOnly, the
// view comes from a plain Bulk Leasequery, which reports only bindings with
// valid lifetime left, so only the leases still assigned at base, the
// latest base-time of the replies, must be in it.
func (s keaSnapshot) compareView(view map[bindingKey]observed, want func(keatest.Lease) bool, activeOnly bool, base int64) viewCheck {
	var c viewCheck
	problem := func(format string, args ...any) { c.Problems = append(c.Problems, fmt.Sprintf(format, args...)) }

	compared := make(map[bindingKey]bool)
	for _, k := range sortedKeys(s.leases) {
		l := s.leases[k]
		if !want(l) {
			continue
		}
		o, ok := view[k]
		if !ok {
			if activeOnly && !assignedAt(l, base) {
				continue // reclaimed, or ran out while the queries ran
			}
			c.Expected++
			problem("%s (DUID %x, Kea state %d, valid until %s): missing", k, l.DUID, l.State, unixString(leaseEnd(l)))
			continue
		}
		c.Expected++
		compared[k] = true
		if diffs := s.compareObserved(o, l); len(diffs) > 0 {
			problem("%s: %s", k, strings.Join(diffs, "; "))
			continue
		}
		if o.Ended {
			c.EndedHeld++
		} else {
			c.Active++
		}
	}

	for _, k := range sortedKeys(view) {
		if compared[k] {
			continue
		}
		o := view[k]
		l, inKea := s.leases[k]
		switch {
		case o.Ended && inKea && assignedAt(l, o.Base):
			problem("%s: ended in the view, Kea holds it for DUID %x until %s", k, l.DUID, unixString(leaseEnd(l)))
		case o.Ended && inKea:
			c.EndedHeld++
		case o.Ended:
			c.EndedGone++
		case inKea:
			problem("%s: active for DUID %x with relay-id %x, outside the query's selection (Kea: DUID %x, state %d)", k, o.ClientID, o.RelayID, l.DUID, l.State)
		default:
			problem("%s: active for DUID %x (valid until %s), Kea has no such lease", k, o.ClientID, unixString(o.ValidEnd))
		}
	}
	return c
}

// compareViews lists the differences between two requestors' views of the
// same bindings: the same keys, clients and relay data, and the same state,
// except that a binding one side still has as active may have run out by
// the base-time of the other side's reply. CLTTs are not compared: a reply
// that groups several bindings of a client sends the newest CLTT of the
// group, and the groups differ between bulk and active replies.
func compareViews(a, b map[bindingKey]observed) []string {
	var problems []string
	for _, k := range sortedKeys(a) {
		if _, ok := b[k]; !ok {
			problems = append(problems, fmt.Sprintf("%s: only in the first view (DUID %x)", k, a[k].ClientID))
		}
	}
	for _, k := range sortedKeys(b) {
		oa, ok := a[k]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: only in the second view (DUID %x)", k, b[k].ClientID))
			continue
		}
		ob := b[k]
		var diffs []string
		add := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }
		if !bytes.Equal(oa.ClientID, ob.ClientID) {
			add("DUID %x and %x", oa.ClientID, ob.ClientID)
		}
		if oa.Ended != ob.Ended && !ranOut(oa, ob) && !ranOut(ob, oa) {
			add("ended %t and %t", oa.Ended, ob.Ended)
		}
		if oa.Relayed != ob.Relayed || oa.Link != ob.Link || !bytes.Equal(oa.RelayID, ob.RelayID) || !bytes.Equal(oa.RemoteID, ob.RemoteID) {
			add("relay link %s relay-id %x remote-id %x and link %s relay-id %x remote-id %x",
				oa.Link, oa.RelayID, oa.RemoteID, ob.Link, ob.RelayID, ob.RemoteID)
		}
		if len(diffs) > 0 {
			problems = append(problems, fmt.Sprintf("%s: %s", k, strings.Join(diffs, "; ")))
		}
	}
	return problems
}

// ranOut reports whether active, a binding reported as active, had run out
// of valid lifetime by the base-time of ended, the same binding reported as
// ended.
func ranOut(active, ended observed) bool {
	return !active.Ended && ended.Ended && active.ValidEnd <= ended.Base+clockSlack
}

// compareStored lists the differences between a binding in alqd's store
// and Kea's lease for the same key. The store keeps what the wire does
// not carry (IAID, granted lifetimes, exact CLTT), so these are exact.
func compareStored(b store.Binding, l keatest.Lease) []string {
	var diffs []string
	add := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }

	if !bytes.Equal(b.ClientID, l.DUID) {
		add("DUID %x, Kea %x", b.ClientID, l.DUID)
	}
	if b.IAID != l.IAID {
		add("IAID %d, Kea %d", b.IAID, l.IAID)
	}
	// The store keeps the granted lifetimes of an active binding and zero
	// for an ended one; Kea keeps them on a reclaimed lease.
	wantPreferred, wantValid := l.PreferredLifetime, l.ValidLifetime
	if l.State != keatest.StateDefault {
		wantPreferred, wantValid = 0, 0
	}
	if b.PreferredLifetime != wantPreferred || b.ValidLifetime != wantValid {
		add("lifetimes %d/%d s, want %d/%d s (Kea state %d)", b.PreferredLifetime, b.ValidLifetime, wantPreferred, wantValid, l.State)
	}
	if b.CLTT.Unix() != l.CLTT {
		add("CLTT %s, Kea %s", unixString(b.CLTT.Unix()), unixString(l.CLTT))
	}
	wantState := map[int]store.State{keatest.StateDefault: store.StateActive, keatest.StateExpiredReclaimed: store.StateExpired}
	if ws, ok := wantState[l.State]; !ok || b.State != ws {
		add("state %s, Kea state %d", b.State, l.State)
	}

	r := keaRelay(l)
	if r == nil {
		if len(b.RelayID) > 0 || len(b.RemoteID) > 0 || len(b.RelayMessage) > 0 {
			add("relay-id %x, remote-id %x, Kea has no relay", b.RelayID, b.RemoteID)
		}
		return diffs
	}
	if b.LinkAddress != r.Link {
		add("link-address %s, Kea %s", b.LinkAddress, r.Link)
	}
	if b.RelayPeer != l.Relays[0].Peer {
		add("relay peer-address %s, Kea %s", b.RelayPeer, l.Relays[0].Peer)
	}
	if !bytes.Equal(b.RelayID, r.RelayID) || !bytes.Equal(b.RemoteID, r.RemoteID) || !bytes.Equal(b.InterfaceID, r.InterfaceID) {
		add("relay-id %x remote-id %x interface-id %x, Kea %x %x %x",
			b.RelayID, b.RemoteID, b.InterfaceID, r.RelayID, r.RemoteID, r.InterfaceID)
	}
	return diffs
}

func storeKey(k store.Key) bindingKey {
	typ := map[store.BindingType]requestor.BindingType{
		store.TypeNA: requestor.TypeNA, store.TypeTA: requestor.TypeTA, store.TypePD: requestor.TypePD,
	}[k.Type]
	return bindingKey{Type: typ, Prefix: k.Prefix}
}

func sortedKeys[V any](m map[bindingKey]V) []bindingKey {
	keys := make([]bindingKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b bindingKey) int {
		if a.Type != b.Type {
			return int(a.Type) - int(b.Type)
		}
		return a.Prefix.Addr().Compare(b.Prefix.Addr())
	})
	return keys
}

func unixString(sec int64) string {
	if sec == infiniteEnd {
		return "infinity"
	}
	return time.Unix(sec, 0).UTC().Format("15:04:05")
}

// firstN joins at most n problems for a test failure, saying how many were
// left out.
func firstN(problems []string, n int) string {
	if len(problems) <= n {
		return strings.Join(problems, "\n")
	}
	return strings.Join(problems[:n], "\n") + fmt.Sprintf("\n... and %d more", len(problems)-n)
}
