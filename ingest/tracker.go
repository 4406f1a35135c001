package ingest

import (
	"encoding/binary"
	"hash/maphash"

	"github.com/alqd/alqd/store"
)

// leaseKey is a store.Key packed into a comparable array: type, prefix
// length, then the 16 address bytes.
type leaseKey [18]byte

func packKey(k store.Key) leaseKey {
	var lk leaseKey
	lk[0] = byte(k.Type)
	lk[1] = byte(k.Prefix.Bits())
	a := k.Prefix.Addr().As16()
	copy(lk[2:], a[:])
	return lk
}

// activeBit marks a tracked lease whose last row assigned it (state 0).
const activeBit = 1

// leaseTracker remembers, for every lease Kea still holds, a fingerprint of
// its DUID and IAID and whether it is assigned. It is what tells RowNew from
// RowExtend, and after a full load it is the set of leases Kea has, which
// reconciliation compares the store against. Kea's memfile backend keeps all
// leases in memory itself. The tracker adds an estimated 40 bytes per lease
// (an 18-byte key and an 8-byte fingerprint in a Go map). Not safe for
// concurrent use.
type leaseTracker struct {
	seed   maphash.Seed
	leases map[leaseKey]uint64
}

func newLeaseTracker() *leaseTracker {
	return &leaseTracker{seed: maphash.MakeSeed(), leases: make(map[leaseKey]uint64)}
}

// observe records row and refines RowAssign into RowNew or RowExtend. Rows
// that delete the lease (release, flush) remove it.
func (t *leaseTracker) observe(row *Row) RowKind {
	key := packKey(row.Binding.Key)
	switch row.Kind {
	case RowRelease, RowFlush:
		// Kea >= 2.7 may still hold a released lease (state 3), but the
		// store has it as released already, and reconciliation only ends
		// active and declined bindings, so forgetting it here is harmless.
		delete(t.leases, key)
		return row.Kind
	case RowAssign:
		mark := t.fingerprint(&row.Binding) | activeBit
		prev, ok := t.leases[key]
		t.leases[key] = mark
		if ok && prev == mark {
			return RowExtend
		}
		return RowNew
	default: // expire, decline: Kea still holds the lease
		t.leases[key] = t.fingerprint(&row.Binding) &^ activeBit
		return row.Kind
	}
}

// present reports whether Kea holds a lease for k.
func (t *leaseTracker) present(k store.Key) bool {
	_, ok := t.leases[packKey(k)]
	return ok
}

func (t *leaseTracker) len() int { return len(t.leases) }

// fingerprint hashes the DUID and IAID; bit 0 is left for activeBit.
func (t *leaseTracker) fingerprint(b *store.Binding) uint64 {
	var h maphash.Hash
	h.SetSeed(t.seed)
	h.Write(b.ClientID)
	var iaid [4]byte
	binary.BigEndian.PutUint32(iaid[:], b.IAID)
	h.Write(iaid[:])
	return h.Sum64() &^ activeBit
}
