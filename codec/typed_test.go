package codec

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
)

// typedOption is the method set shared by the typed option values.
type typedOption interface {
	Decode(data []byte) error
	AppendTo(b []byte) ([]byte, error)
	Len() int
}

// roundTripTyped decodes data with the typed decoder of T, encodes the
// result, decodes that again and checks that both values are equal, that Len
// is exact and that encoding is stable. It returns the typed encoding, header
// included, and the first decoded value.
func roundTripTyped[T any, P interface {
	*T
	typedOption
}](data []byte) ([]byte, P, error) {
	first := P(new(T))
	if err := first.Decode(data); err != nil {
		return nil, nil, err
	}
	enc, err := first.AppendTo(nil)
	if err != nil {
		return nil, nil, fmt.Errorf("encode %T: %w", first, err)
	}
	if len(enc) != first.Len() {
		return nil, nil, fmt.Errorf("%T: Len %d, encoded %d octets", first, first.Len(), len(enc))
	}
	second := P(new(T))
	if err := second.Decode(enc[OptionHeaderLen:]); err != nil {
		return nil, nil, fmt.Errorf("decode re-encoded %T: %w", first, err)
	}
	if !reflect.DeepEqual(first, second) {
		return nil, nil, fmt.Errorf("%T changed across a round trip:\n%+v\n%+v", first, first, second)
	}
	again, err := second.AppendTo(nil)
	if err != nil || !bytes.Equal(again, enc) {
		return nil, nil, fmt.Errorf("%T: second encoding differs: %x vs %x (%v)", first, again, enc, err)
	}
	return enc, first, nil
}

// typedRoundTrip runs roundTripTyped with the decoder for o.Code, then does
// the same for every option and relay message nested inside, and returns the
// typed encoding of o. Codes without a typed decoder are re-encoded raw.
func typedRoundTrip(o Option) ([]byte, error) {
	switch o.Code {
	case OptClientID, OptServerID, OptRelayID:
		d, err := ParseDUID(o.Data)
		if err != nil {
			return nil, err
		}
		enc, err := d.AppendTo(nil)
		if err != nil {
			return nil, fmt.Errorf("encode DUID: %w", err)
		}
		if len(enc) != d.Len() {
			return nil, fmt.Errorf("DUID Len %d, encoded %d", d.Len(), len(enc))
		}
		again, err := ParseDUID(enc)
		if err != nil || !reflect.DeepEqual(d, again) {
			return nil, fmt.Errorf("DUID changed across a round trip: %+v, %+v (%v)", d, again, err)
		}
		return AppendOption(nil, o.Code, enc)
	case OptIANA:
		enc, v, err := roundTripTyped[IANA](o.Data)
		return enc, walkTyped(err, v.Options)
	case OptIAPD:
		enc, v, err := roundTripTyped[IAPD](o.Data)
		return enc, walkTyped(err, v.Options)
	case OptIATA:
		enc, v, err := roundTripTyped[IATA](o.Data)
		return enc, walkTyped(err, v.Options)
	case OptIAAddr:
		enc, v, err := roundTripTyped[IAAddr](o.Data)
		return enc, walkTyped(err, v.Options)
	case OptIAPrefix:
		enc, v, err := roundTripTyped[IAPrefix](o.Data)
		return enc, walkTyped(err, v.Options)
	case OptLQQuery:
		enc, v, err := roundTripTyped[LQQuery](o.Data)
		return enc, walkTyped(err, v.Options)
	case OptORO:
		enc, _, err := roundTripTyped[ORO](o.Data)
		return enc, err
	case OptStatusCode:
		enc, _, err := roundTripTyped[Status](o.Data)
		return enc, err
	case OptRemoteID:
		enc, _, err := roundTripTyped[RemoteID](o.Data)
		return enc, err
	case OptLQClientLink:
		enc, _, err := roundTripTyped[LQClientLink](o.Data)
		return enc, err
	case OptLQRelayData:
		enc, v, err := roundTripTyped[LQRelayData](o.Data)
		if err != nil {
			return nil, err
		}
		return enc, relayRoundTrip(v.Message)
	case OptClientData:
		enc, v, err := roundTripTyped[ClientData](o.Data)
		if err != nil {
			return nil, err
		}
		return enc, clientDataWalk(v)
	case OptCLTTime, OptLQBaseTime, OptLQStartTime, OptLQEndTime:
		if len(o.Data) != 4 {
			return nil, ErrOptionLength
		}
		var opts Options
		opts.Add(o.Code, o.Data)
		v, _ := opts.Uint32(o.Code)
		return AppendUint32Option(nil, o.Code, v), nil
	case OptRelayMsg:
		if len(o.Data) > 0 && MsgType(o.Data[0]).IsRelay() {
			if err := relayRoundTrip(o.Data); err != nil {
				return nil, err
			}
			return o.AppendTo(nil)
		}
		var m Message
		if err := m.Decode(o.Data); err != nil {
			return nil, err
		}
		if err := walkTyped(nil, m.Options); err != nil {
			return nil, err
		}
		return o.AppendTo(nil)
	}
	return o.AppendTo(nil)
}

// walkTyped runs typedRoundTrip on every option of opts unless err is set.
func walkTyped(err error, opts Options) error {
	if err != nil {
		return err
	}
	for _, o := range opts {
		if _, err := typedRoundTrip(o); err != nil {
			return fmt.Errorf("inside: %v: %w", o.Code, err)
		}
	}
	return nil
}

func clientDataWalk(d *ClientData) error {
	for i := range d.Addrs {
		if err := walkTyped(nil, d.Addrs[i].Options); err != nil {
			return err
		}
	}
	for i := range d.Prefixes {
		if err := walkTyped(nil, d.Prefixes[i].Options); err != nil {
			return err
		}
	}
	if d.HasRelayData {
		if err := relayRoundTrip(d.RelayData.Message); err != nil {
			return err
		}
	}
	return walkTyped(nil, d.Other)
}

// relayRoundTrip decodes an encoded relay message, checks that it re-encodes
// to the same bytes and walks its options.
func relayRoundTrip(b []byte) error {
	var r RelayMessage
	if err := r.Decode(b); err != nil {
		return err
	}
	enc, err := r.AppendTo(nil)
	if err != nil {
		return err
	}
	if !bytes.Equal(enc, b) {
		return errors.New("relay message re-encodes differently")
	}
	return walkTyped(nil, r.Options)
}

func asStatusError(err error, target **StatusError) bool { return errors.As(err, target) }
