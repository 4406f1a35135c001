package loadgen

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/ingest"
	"github.com/alqd/alqd/store"
)

func TestChurnSameSeedSameChanges(t *testing.T) {
	cfg := ChurnConfig{Seed: 42, Clients: 500, Links: 8, Relays: 3}
	a, b := newTestChurn(t, cfg), newTestChurn(t, cfg)

	// The same changes come out whatever the batch sizes.
	want := a.NextChanges(nil, 5000, fixedNow)
	var got []Change
	for _, n := range []int{1, 7, 1000, 2, 3990} {
		got = b.NextChanges(got, n, fixedNow)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d changes, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Kind != want[i].Kind || got[i].Client != want[i].Client {
			t.Fatalf("change %d: got %v of client %d, want %v of client %d", i, got[i].Kind, got[i].Client, want[i].Kind, want[i].Client)
		}
		if d := bindingDiff(&got[i].Binding, &want[i].Binding); d != "" {
			t.Fatalf("change %d: %s", i, d)
		}
	}
}

func TestChurnOtherSeedOtherChanges(t *testing.T) {
	a := newTestChurn(t, ChurnConfig{Seed: 1}).NextChanges(nil, 100, fixedNow)
	b := newTestChurn(t, ChurnConfig{Seed: 2}).NextChanges(nil, 100, fixedNow)
	same := 0
	for i := range a {
		if a[i].Client == b[i].Client {
			same++
		}
	}
	if same > 10 {
		t.Errorf("seeds 1 and 2 picked the same client in %d of 100 changes", same)
	}
}

// TestChurnEventOrder checks the life of every client: bindings start with
// new, only held bindings are renewed, released or expired, and an event
// of a client with a prefix gives its IA_NA change, then its IA_PD change.
func TestChurnEventOrder(t *testing.T) {
	c := newTestChurn(t, ChurnConfig{Seed: 7, Clients: 300, Links: 4, Relays: 2, PDFraction: 0.5})
	changes := c.NextChanges(nil, 20000, fixedNow)

	holds := make(map[uint32]bool)
	var kinds [NumChangeKinds]int
	var pd int
	for i := 0; i < len(changes); i++ {
		ch := &changes[i]
		kinds[ch.Kind]++
		if ch.Binding.Type != store.TypeNA {
			t.Fatalf("change %d: event starts with a %v binding, want IA_NA", i, ch.Binding.Type)
		}
		switch ch.Kind {
		case ChangeNew:
			if holds[ch.Client] {
				t.Fatalf("change %d: client %d gets new bindings while it holds some", i, ch.Client)
			}
			holds[ch.Client] = true
		case ChangeRenew:
			if !holds[ch.Client] {
				t.Fatalf("change %d: client %d renews without bindings", i, ch.Client)
			}
		default:
			if !holds[ch.Client] {
				t.Fatalf("change %d: client %d ends bindings it does not hold (%v)", i, ch.Client, ch.Kind)
			}
			holds[ch.Client] = false
		}
		if c.HasPrefix(ch.Client) {
			if i+1 >= len(changes) {
				break // the IA_PD change of the last event is still queued
			}
			i++
			pdc := &changes[i]
			if pdc.Binding.Type != store.TypePD || pdc.Client != ch.Client || pdc.Kind != ch.Kind {
				t.Fatalf("change %d: got %v %v of client %d after the IA_NA change of client %d, want its IA_PD change", i, pdc.Kind, pdc.Binding.Type, pdc.Client, ch.Client)
			}
			pd++
		}
	}
	for k, n := range kinds {
		if n == 0 {
			t.Errorf("no %v change in 20000", ChangeKind(k))
		}
	}
	// With weights 8:1:1 a renewal is the most common event.
	if kinds[ChangeRenew] < kinds[ChangeNew] || kinds[ChangeRenew] < kinds[ChangeRelease] {
		t.Errorf("kinds %v: renewals are not the most common event", kinds)
	}
	if pd < 2000 || pd > 8000 {
		t.Errorf("%d IA_PD changes of 20000 with PD fraction 0.5, want roughly a third", pd)
	}
}

func TestChurnNoPrefixes(t *testing.T) {
	c := newTestChurn(t, ChurnConfig{PDFraction: -1})
	for _, b := range c.Next(nil, 1000, fixedNow) {
		if b.Type != store.TypeNA {
			t.Fatalf("got a %v binding with a negative PD fraction", b.Type)
		}
	}
}

func TestChurnBindingFields(t *testing.T) {
	c := newTestChurn(t, ChurnConfig{Seed: 3, Clients: 100, Links: 10, Relays: 5})
	for _, ch := range c.NextChanges(nil, 2000, fixedNow) {
		b := &ch.Binding
		j := int(ch.Client % 10)
		if n, ok := ClientNumber(b.ClientID); !ok || n != ch.Client {
			t.Fatalf("client %d: DUID %x gives client number %d, %v", ch.Client, b.ClientID, n, ok)
		}
		if b.LinkAddress != LinkAddress(j) || ch.SubnetID != KeaSubnetID(j) {
			t.Fatalf("client %d: link %v subnet %d, want %v and %d", ch.Client, b.LinkAddress, ch.SubnetID, LinkAddress(j), KeaSubnetID(j))
		}
		if !bytes.Equal(b.RelayID, RelayID(j%5)) {
			t.Fatalf("client %d on link %d: relay-id %x, want that of relay %d", ch.Client, j, b.RelayID, j%5)
		}
		if !ch.Binding.State.Ended() && (b.PreferredLifetime != DefaultPreferredLifetime || b.ValidLifetime != DefaultValidLifetime) {
			t.Fatalf("active binding with lifetimes %d/%d", b.PreferredLifetime, b.ValidLifetime)
		}
		if ch.Binding.State.Ended() && (b.PreferredLifetime != 0 || b.ValidLifetime != 0) {
			t.Fatalf("%v binding with lifetimes %d/%d, want 0/0", b.State, b.PreferredLifetime, b.ValidLifetime)
		}

		// The Relay-forward decodes and carries the binding's relay options.
		var rm codec.RelayMessage
		if err := rm.Decode(b.RelayMessage); err != nil {
			t.Fatalf("relay message %x: %v", b.RelayMessage, err)
		}
		if rm.LinkAddress != b.LinkAddress || rm.PeerAddress != b.RelayPeer {
			t.Fatalf("relay message link %v peer %v, binding %v %v", rm.LinkAddress, rm.PeerAddress, b.LinkAddress, b.RelayPeer)
		}
		relayID, _ := rm.Options.RelayID()
		iface, _ := rm.Options.InterfaceID()
		remote, _, err := rm.Options.RemoteID()
		if err != nil || !bytes.Equal(relayID, b.RelayID) || !bytes.Equal(iface, b.InterfaceID) || remote.EnterpriseNumber != DocumentationEnterpriseNumber {
			t.Fatalf("relay options relay-id %x interface-id %q remote-id %+v (%v) do not match the binding", relayID, iface, remote, err)
		}
	}
}

func TestChurnDirectClients(t *testing.T) {
	c := newTestChurn(t, ChurnConfig{Direct: true, Stamp: StampRelay})
	for _, ch := range c.NextChanges(nil, 200, fixedNow) {
		b := &ch.Binding
		if b.RelayID != nil || b.RemoteID != nil || b.InterfaceID != nil || b.RelayMessage != nil || b.RelayPeer.IsValid() {
			t.Fatalf("direct client %d has relay fields: %+v", ch.Client, b)
		}
		if ch.Stamp != StampNone {
			t.Fatalf("direct client with relay stamps: stamp %v, want none", ch.Stamp)
		}
	}
}

func TestChurnPrefixesDistinct(t *testing.T) {
	c := newTestChurn(t, ChurnConfig{Clients: 5000, PDFraction: 1, PrefixLength: 48})
	seen := make(map[store.Key]uint32)
	for _, ch := range c.NextChanges(nil, 40000, fixedNow) {
		k := ch.Binding.Key
		if owner, ok := seen[k]; ok && owner != ch.Client {
			t.Fatalf("%v %v belongs to clients %d and %d", k.Type, k.Prefix, owner, ch.Client)
		}
		seen[k] = ch.Client
		if k.Type == store.TypePD && (k.Prefix.Bits() != 48 || k.Prefix.Masked() != k.Prefix) {
			t.Fatalf("prefix %v: want a /48 without host bits", k.Prefix)
		}
	}
}

func TestChurnStamps(t *testing.T) {
	later := fixedNow.Add(3 * time.Second)
	for _, tc := range []struct {
		mode    StampMode
		stamped bool
	}{
		{StampDUID, true},
		{StampRelay, true},
		{StampNone, false},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			c := newTestChurn(t, ChurnConfig{Stamp: tc.mode, Clients: 10})
			duids := make(map[uint32][]byte)
			for _, ch := range c.NextChanges(nil, 100, fixedNow) {
				got, ok := stampOf(&ch.Binding)
				if ok != tc.stamped || (ok && !got.Equal(fixedNow)) {
					t.Fatalf("stamp %v, %v; want %v, %v", got, ok, fixedNow, tc.stamped)
				}
				ch.SetStamp(later)
				got, ok = stampOf(&ch.Binding)
				if ok != tc.stamped || (ok && !got.Equal(later)) {
					t.Fatalf("after SetStamp: stamp %v, %v; want %v, %v", got, ok, later, tc.stamped)
				}

				// Only the DUID stamp changes the client's DUID.
				if prev, seen := duids[ch.Client]; seen && tc.mode != StampDUID && !bytes.Equal(prev, ch.Binding.ClientID) {
					t.Fatalf("client %d DUID changed from %x to %x", ch.Client, prev, ch.Binding.ClientID)
				}
				duids[ch.Client] = ch.Binding.ClientID
			}
		})
	}
}

// stampOf reads the stamp of b as a requestor would from OPTION_CLIENT_DATA.
func stampOf(b *store.Binding) (time.Time, bool) {
	d := codec.ClientData{ClientID: b.ClientID}
	if len(b.RelayMessage) > 0 {
		d.HasRelayData = true
		d.RelayData = codec.LQRelayData{PeerAddress: b.RelayPeer, Message: b.RelayMessage}
	}
	return StampFromClientData(&d)
}

// TestChurnRecordsValid checks that every change is a valid ingest API
// record that decodes back into the same binding.
func TestChurnRecordsValid(t *testing.T) {
	for _, cfg := range []ChurnConfig{
		{Seed: 1},
		{Seed: 2, Direct: true},
		{Seed: 3, Stamp: StampRelay, PDFraction: 1},
		{Seed: 4, Stamp: StampNone, Relays: 1, Links: 1},
	} {
		c := newTestChurn(t, cfg)
		var line []byte
		for i, ch := range c.NextChanges(nil, 3000, fixedNow) {
			var err error
			line, err = ingest.AppendRecord(line[:0], &ch.Binding)
			if err != nil {
				t.Fatalf("%+v change %d: AppendRecord: %v", cfg, i, err)
			}
			var got store.Binding
			if err := ingest.DecodeRecord(line, &got); err != nil {
				t.Fatalf("%+v change %d: record %s does not decode: %v", cfg, i, line, err)
			}
			if d := bindingDiff(&got, &ch.Binding); d != "" {
				t.Fatalf("%+v change %d: %s", cfg, i, d)
			}
		}
	}
}

func TestChurnConfigInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  ChurnConfig
	}{
		{"negative clients", ChurnConfig{Clients: -1}},
		{"too many clients", ChurnConfig{Clients: MaxClients + 1}},
		{"too many links", ChurnConfig{Links: MaxLinks + 1}},
		{"more relays than links", ChurnConfig{Links: 4, Relays: 5}},
		{"PD fraction above 1", ChurnConfig{PDFraction: 1.5}},
		{"negative weight", ChurnConfig{RenewWeight: 1, ExpireWeight: -1}},
		{"preferred above valid", ChurnConfig{PreferredLifetime: 100, ValidLifetime: 50}},
		{"prefix too short", ChurnConfig{PrefixLength: 35}},
		{"prefix too long", ChurnConfig{PrefixLength: 65}},
		{"prefixes run out", ChurnConfig{Clients: 1000, PrefixLength: 40}},
		{"unknown stamp", ChurnConfig{Stamp: 9}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewChurn(tc.cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("NewChurn(%+v) = %v, want ErrInvalidConfig", tc.cfg, err)
			}
		})
	}
}

func TestChurnManyClientsWithoutPrefixes(t *testing.T) {
	// Without prefixes the prefix length does not limit the population.
	if _, err := NewChurn(ChurnConfig{Clients: 1000, PrefixLength: 40, PDFraction: -1}); err != nil {
		t.Fatal(err)
	}
}

func TestStampModeNames(t *testing.T) {
	for _, m := range []StampMode{StampDUID, StampRelay, StampNone} {
		got, err := ParseStampMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseStampMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseStampMode("iaid"); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("ParseStampMode(iaid) = %v, want ErrInvalidConfig", err)
	}
}

func TestStampDecodersRejectOthers(t *testing.T) {
	for _, tc := range []struct {
		name string
		duid []byte
	}{
		{"short", []byte{0, 2, 0, 0, 0x7e, 0xd9}},
		{"other enterprise", appendClientDUIDWithEN(9, 1)},
		{"DUID-LL", []byte{0, 3, 0, 1, 0, 0, 0x5e, 0, 0x53, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"no stamp", appendClientDUID(nil, 5, 0)},
	} {
		if _, ok := StampFromDUID(tc.duid); ok {
			t.Errorf("%s: StampFromDUID(%x) found a stamp", tc.name, tc.duid)
		}
	}
	for _, msg := range [][]byte{
		nil,
		make([]byte, 33),
		append([]byte{byte(codec.MsgRelayForw)}, make([]byte, 33)...),                          // no options
		append(append([]byte{byte(codec.MsgRelayForw)}, make([]byte, 33)...), 0, 17, 0),        // cut option header
		append(append([]byte{byte(codec.MsgRelayForw)}, make([]byte, 33)...), 0, 17, 0, 20, 0), // option past the end
	} {
		if _, ok := StampFromRelayMessage(msg); ok {
			t.Errorf("StampFromRelayMessage(%x) found a stamp", msg)
		}
	}
}

func appendClientDUIDWithEN(en uint32, client uint32) []byte {
	b := appendClientDUID(nil, client, 12345)
	b[2], b[3], b[4], b[5] = byte(en>>24), byte(en>>16), byte(en>>8), byte(en)
	return b
}

func TestStampDecodersDoNotAllocate(t *testing.T) {
	c := newTestChurn(t, ChurnConfig{Stamp: StampRelay})
	b := c.Next(nil, 1, fixedNow)[0]
	d := codec.ClientData{ClientID: b.ClientID, HasRelayData: true, RelayData: codec.LQRelayData{Message: b.RelayMessage}}
	allocs := testing.AllocsPerRun(100, func() {
		if _, ok := StampFromClientData(&d); !ok {
			t.Fatal("no stamp")
		}
	})
	if allocs != 0 {
		t.Errorf("StampFromClientData allocates %v times per call", allocs)
	}
}

func TestChurnNextAllocatesRarely(t *testing.T) {
	c := newTestChurn(t, ChurnConfig{})
	dst := make([]store.Binding, 0, 64)
	allocs := testing.AllocsPerRun(1000, func() { dst = c.Next(dst[:0], 64, fixedNow) })
	// One 64 KiB arena block lasts for several hundred bindings.
	if allocs > 1 {
		t.Errorf("Next of 64 bindings allocates %v times, want at most one arena block", allocs)
	}
}

func TestClientDUID(t *testing.T) {
	d := ClientDUID(77, fixedNow)
	if n, ok := ClientNumber(d); !ok || n != 77 {
		t.Errorf("ClientNumber(%x) = %d, %v; want 77", d, n, ok)
	}
	if got, ok := StampFromDUID(d); !ok || !got.Equal(fixedNow) {
		t.Errorf("StampFromDUID(%x) = %v, %v; want %v", d, got, ok, fixedNow)
	}
	if _, ok := StampFromDUID(ClientDUID(77, time.Time{})); ok {
		t.Error("a DUID made without a time carries a stamp")
	}
	if _, err := codec.ParseDUID(d); err != nil {
		t.Errorf("ParseDUID(%x): %v", d, err)
	}
}
