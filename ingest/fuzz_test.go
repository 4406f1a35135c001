package ingest

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"

	"github.com/alqd/alqd/store"
)

// FuzzParseRow checks that any row either fails with a *RowError or gives a
// binding that keeps the parser's promises, and that parsing does not depend
// on the rows parsed before.
func FuzzParseRow(f *testing.F) {
	for _, line := range readLeaseFile(f)[1:] {
		f.Add(line)
	}
	f.Add("2001:db8:1::1005,00,86400,1796498500,1,0,0,0,128,0,0,,,1,,0,0")
	f.Add("2001:db8:1::1,00:01:02:03,30,1000,1,20,0,7,128,0,0,,,0," + keaRelayContext + ",1,2")
	f.Add(`2001:db8:1::1,00:01:02:03,30,1000,1,20,0,7,128,0,0,,,0,{"ISC":{"relay-info":[{"hop":1&#x2c"link":"::"&#x2c"peer":"fe80::1"&#x2c"remote-id":"00000de9aa"&#x2c"relay-id":"000300010a0b0c0d0e0f"}&#x2c{"hop":0&#x2c"link":"2001:db8::1"&#x2c"peer":"fe80::2"}]}},1,2`)
	f.Fuzz(func(t *testing.T, line string) {
		var p Parser
		if err := p.SetHeader(keaHeader); err != nil {
			t.Fatal(err)
		}
		var row Row
		err := p.ParseRow(line, &row)
		if err != nil {
			if _, ok := err.(*RowError); !ok {
				t.Fatalf("error %T is not a *RowError: %v", err, err)
			}
			return
		}
		checkRow(t, &row)

		// The same row after another one, through the user_context cache,
		// and through a fresh parser, gives the same binding.
		var other Row
		p.ParseRow("2001:db8:1::1,00:01:02:03,30,1000,1,20,0,7,128,0,0,,,0,"+keaRelayContext+",1,2", &other)
		var again Row
		if err := p.ParseRow(line, &again); err != nil {
			t.Fatalf("second parse failed: %v", err)
		}
		if !reflect.DeepEqual(row, again) {
			t.Fatalf("second parse differs:\n%s\n%s", describe(&row.Binding), describe(&again.Binding))
		}
	})
}

func checkRow(t *testing.T, row *Row) {
	t.Helper()
	b := &row.Binding
	if b.Type > store.TypePD || !b.Prefix.IsValid() || b.Prefix.Masked() != b.Prefix || !b.Prefix.Addr().Is6() {
		t.Fatalf("invalid key %v %v", b.Type, b.Prefix)
	}
	if b.Type != store.TypePD && b.Prefix.Bits() != 128 {
		t.Fatalf("%v binding with prefix %v", b.Type, b.Prefix)
	}
	if b.State.Ended() && (b.PreferredLifetime != 0 || b.ValidLifetime != 0) {
		t.Fatalf("ended binding with lifetimes %d/%d", b.PreferredLifetime, b.ValidLifetime)
	}
	if (b.RelayMessage != nil) != b.RelayPeer.IsValid() {
		t.Fatalf("relay message %x with peer %v", b.RelayMessage, b.RelayPeer)
	}
	if b.RelayMessage != nil && (len(b.RelayMessage) < relayHeaderLen || b.RelayMessage[0] != msgRelayForw) {
		t.Fatalf("relay message %x is not a Relay-forward", b.RelayMessage)
	}
	if row.Kind >= NumRowKinds || row.Kind == RowNew || row.Kind == RowExtend {
		t.Fatalf("parser returned kind %v", row.Kind)
	}
}

// FuzzUserContext decodes a user context, encodes the Relay-forward chain,
// decodes the chain again and compares it with the relays.
func FuzzUserContext(f *testing.F) {
	f.Add([]byte(`{ "ISC": { "relays": [ { "hop": 0, "link": "2001:db8:2::1", "options": "0x0012000C766574682D636C692E3130300025000E00000DE97375622D3030303030310035000A0003000102AABBCCDD01", "peer": "2001:db8:1::2" } ] } }`))
	f.Add([]byte(`{"ISC":{"relay-info":[{"hop":1,"link":"::","peer":"fe80::1","remote-id":"00000de9aa","relay-id":"000300010a0b0c0d0e0f"},{"hop":0,"link":"2001:db8::1","peer":"fe80::2","options":"0x00120001AA"}]}}`))
	f.Add([]byte(`{"ISC":{}}`))
	f.Add([]byte(`{"other":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		relays, err := decodeUserContext(data, nil)
		if err != nil {
			return
		}
		chain, fields, err := resolveRelays(nil, relays)
		if err != nil {
			return
		}
		if len(relays) == 0 {
			if chain != nil || fields.message != nil {
				t.Fatalf("no relays gave chain %x", chain)
			}
			return
		}
		if fields.peer != relays[0].peer {
			t.Fatalf("peer %v, want the outermost relay's %v", fields.peer, relays[0].peer)
		}

		msg := chain
		for i := range relays {
			hop, link, peer, options, inner, err := splitRelayForw(msg, i == len(relays)-1)
			if err != nil {
				t.Fatalf("relay %d of %x: %v", i, chain, err)
			}
			r := &relays[i]
			if hop != r.hop || link != r.link || peer != r.peer || !bytes.Equal(options, r.options) {
				t.Fatalf("relay %d decoded as %d %v %v %x, want %d %v %v %x", i, hop, link, peer, options, r.hop, r.link, r.peer, r.options)
			}
			again := relayInfo{options: bytes.Clone(options)}
			if err := again.splitOptions(); err != nil {
				t.Fatalf("relay %d options no longer split: %v", i, err)
			}
			msg = inner
		}
	})
}

// splitRelayForw decodes one Relay-forward: its header, its options without
// OPTION_RELAY_MSG, and the inner message, which the innermost lacks.
func splitRelayForw(msg []byte, innermost bool) (hop uint8, link, peer netip.Addr, options, inner []byte, err error) {
	if len(msg) < relayHeaderLen || msg[0] != msgRelayForw {
		return 0, link, peer, nil, nil, ErrInvalidRelayOptions
	}
	hop = msg[1]
	link = netip.AddrFrom16([16]byte(msg[2:18]))
	peer = netip.AddrFrom16([16]byte(msg[18:34]))
	rest := msg[relayHeaderLen:]
	for off := 0; off < len(rest); {
		if len(rest)-off < optionHeaderLen {
			return 0, link, peer, nil, nil, ErrInvalidRelayOptions
		}
		code := binary.BigEndian.Uint16(rest[off:])
		length := int(binary.BigEndian.Uint16(rest[off+2:]))
		end := off + optionHeaderLen + length
		if end > len(rest) {
			return 0, link, peer, nil, nil, ErrInvalidRelayOptions
		}
		if code == optRelayMsg {
			if inner != nil || end != len(rest) {
				return 0, link, peer, nil, nil, ErrInvalidRelayOptions // appendRelayChain puts it last, once
			}
			inner = rest[off+optionHeaderLen : end]
		} else {
			options = append(options, rest[off:end]...)
		}
		off = end
	}
	if (inner == nil) != innermost {
		return 0, link, peer, nil, nil, ErrInvalidRelayOptions
	}
	return hop, link, peer, options, inner, nil
}

// FuzzDecodeRecord checks decode-encode-decode equality of NDJSON records.
func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte(recordNA))
	f.Add([]byte(recordPD))
	f.Add([]byte(`{"type":"na","address":"2001:db8::6","state":"declined","preferred_lifetime":0,"valid_lifetime":86400,"cltt":"2026-12-04T19:21:29Z"}`))
	f.Add([]byte(`{"type":"ta","address":"2001:db8::5/128","client_id":"000300010a0b0c0d0e0f","iaid":7,"state":"released","cltt":"2026-12-04T19:21:29.5+02:00"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		var b store.Binding
		if err := DecodeRecord(line, &b); err != nil {
			if _, ok := err.(*RecordError); !ok {
				t.Fatalf("error %T is not a *RecordError: %v", err, err)
			}
			return
		}
		if !json.Valid(line) {
			t.Fatalf("accepted invalid JSON %q", line)
		}
		encoded, err := AppendRecord(nil, &b)
		if err != nil {
			t.Fatalf("AppendRecord of a decoded record: %v", err)
		}
		var again store.Binding
		if err := DecodeRecord(encoded, &again); err != nil {
			t.Fatalf("DecodeRecord(%s): %v", encoded, err)
		}
		if !bindingsEqual(&b, &again) {
			t.Fatalf("round trip differs:\n%s\n%s", describe(&b), describe(&again))
		}
	})
}
