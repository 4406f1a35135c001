package codec

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// The fuzz targets below are listed in fuzz_targets.txt, which `make fuzz`
// reads. Each one seeds its corpus from the wire vectors and checks that
// whatever decodes re-encodes and decodes to the same value, and that
// whatever fails, fails with the documented error type instead of a panic.

// vectorMessages returns every message of the vectors, the frames of the
// streams included.
func vectorMessages(tb testing.TB) [][]byte {
	var out [][]byte
	for _, v := range loadVectors(tb) {
		if v.Kind == "message" {
			out = append(out, v.bytes)
			continue
		}
		var f Framer
		f.Feed(v.bytes)
		for {
			msg, err := f.Next()
			if err != nil || msg == nil {
				break
			}
			out = append(out, bytes.Clone(msg))
		}
	}
	return out
}

// vectorOptions returns every option found anywhere in the vectors, nested
// ones and those inside relay messages included.
func vectorOptions(tb testing.TB) []Option {
	var out []Option
	var visit func(opts Options)
	visitMessage := func(b []byte) {
		if typ, err := PeekType(b); err == nil && typ.IsRelay() {
			var r RelayMessage
			if r.Decode(b) == nil {
				visit(r.Options)
			}
			return
		}
		var m Message
		if m.Decode(b) == nil {
			visit(m.Options)
		}
	}
	visit = func(opts Options) {
		for _, o := range opts {
			out = append(out, o)
			var inner Options
			switch o.Code {
			case OptLQQuery:
				_ = inner.Decode(o.Data[lqQueryLen:])
			case OptClientData:
				_ = inner.Decode(o.Data)
			case OptIAAddr:
				_ = inner.Decode(o.Data[iaAddrLen:])
			case OptIAPrefix:
				_ = inner.Decode(o.Data[iaPrefixLen:])
			case OptLQRelayData:
				visitMessage(o.Data[lqRelayDataLen:])
			case OptRelayMsg:
				visitMessage(o.Data)
			}
			visit(inner)
		}
	}
	for _, msg := range vectorMessages(tb) {
		visitMessage(msg)
	}
	return out
}

// vectorOptionData returns the option-data of every vector option with one
// of the given codes.
func vectorOptionData(tb testing.TB, codes ...OptionCode) [][]byte {
	var out [][]byte
	for _, o := range vectorOptions(tb) {
		for _, c := range codes {
			if o.Code == c {
				out = append(out, o.Data)
			}
		}
	}
	if len(out) == 0 {
		tb.Fatalf("no vector option with codes %v", codes)
	}
	return out
}

// requireDecodeError fails unless err is a *DecodeError wrapping a sentinel.
func requireDecodeError(t *testing.T, err error) {
	t.Helper()
	var de *DecodeError
	if !errors.As(err, &de) || de.Err == nil {
		t.Fatalf("decode error %v (%T) is not a *DecodeError", err, err)
	}
}

func FuzzMessage(f *testing.F) {
	for _, msg := range vectorMessages(f) {
		f.Add(msg)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m Message
		if err := m.Decode(data); err != nil {
			requireDecodeError(t, err)
			return
		}
		enc, err := m.AppendTo(nil)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(enc, data) || m.Len() != len(data) {
			t.Fatalf("re-encoded %x (Len %d), decoded %x", enc, m.Len(), data)
		}
		var again Message
		if err := again.Decode(enc); err != nil {
			t.Fatalf("decode re-encoded: %v", err)
		}
		if !reflect.DeepEqual(m, again) {
			t.Fatalf("decoded values differ:\n%+v\n%+v", m, again)
		}
		// Every typed decoder accepts what the message decoder accepted.
		if err := walkTyped(nil, m.Options); err != nil {
			t.Fatalf("typed round trip: %v", err)
		}
	})
}

func FuzzRelayMessage(f *testing.F) {
	for _, data := range vectorOptionData(f, OptLQRelayData) {
		f.Add(data[lqRelayDataLen:])
	}
	for _, msg := range vectorMessages(f)[:4] {
		f.Add(relayChain(f, msg, 2))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r RelayMessage
		if err := r.Decode(data); err != nil {
			requireDecodeError(t, err)
			return
		}
		if err := relayRoundTrip(data); err != nil {
			t.Fatal(err)
		}
		if r.Len() != len(data) {
			t.Fatalf("Len %d, decoded %d octets", r.Len(), len(data))
		}
		if inner, ok := r.InnerMessage(); ok {
			// The relayed message was checked with the relay; decoding it
			// alone must agree.
			var err error
			if typ, _ := PeekType(inner); typ.IsRelay() {
				var ir RelayMessage
				err = ir.Decode(inner)
			} else {
				var m Message
				err = m.Decode(inner)
			}
			if err != nil {
				t.Fatalf("relayed message fails alone: %v", err)
			}
		}
	})
}

// FuzzOptions is the option tree fuzzer: it decodes an option sequence and
// runs every typed decoder on every option in it, recursively.
func FuzzOptions(f *testing.F) {
	for _, msg := range vectorMessages(f) {
		if typ, _ := PeekType(msg); !typ.IsRelay() {
			f.Add(msg[HeaderLen:])
		}
	}
	for _, o := range vectorOptions(f) {
		enc, _ := o.AppendTo(nil)
		f.Add(enc)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var opts Options
		if err := opts.Decode(data); err != nil {
			requireDecodeError(t, err)
			return
		}
		enc, err := opts.AppendTo(nil)
		if err != nil || !bytes.Equal(enc, data) || opts.Len() != len(data) {
			t.Fatalf("re-encoded %x, %v; decoded %x", enc, err, data)
		}
		if err := walkTyped(nil, opts); err != nil {
			t.Fatalf("typed round trip: %v", err)
		}
	})
}

func FuzzClientData(f *testing.F) {
	for _, data := range vectorOptionData(f, OptClientData) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var cd ClientData
		if err := cd.Decode(data); err != nil {
			requireDecodeError(t, err)
			return
		}
		enc, _, err := roundTripTyped[ClientData](data)
		if err != nil {
			t.Fatal(err)
		}
		if len(enc) != OptionHeaderLen+len(data) {
			t.Fatalf("re-encoded %d octets from %d", len(enc), len(data))
		}
		// The raw option decoder and the typed one agree on validity.
		var opts Options
		if err := opts.Decode(data); err != nil {
			t.Fatalf("Options.Decode rejects what ClientData.Decode accepts: %v", err)
		}
	})
}

func FuzzLQQuery(f *testing.F) {
	for _, data := range vectorOptionData(f, OptLQQuery) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var q LQQuery
		if err := q.Decode(data); err != nil {
			requireDecodeError(t, err)
			return
		}
		enc, _, err := roundTripTyped[LQQuery](data)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc[OptionHeaderLen:], data) {
			t.Fatalf("re-encoded %x from %x", enc[OptionHeaderLen:], data)
		}
		if err := walkTyped(nil, q.Options); err != nil {
			t.Fatal(err)
		}
		// Validate either accepts or returns a *StatusError.
		if err := q.Validate(); err != nil {
			var se *StatusError
			if !errors.As(err, &se) {
				t.Fatalf("Validate = %v, not a *StatusError", err)
			}
		}
	})
}

func FuzzDUID(f *testing.F) {
	for _, data := range vectorOptionData(f, OptClientID, OptServerID, OptRelayID) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDUID(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidDUID) {
				t.Fatalf("ParseDUID = %v", err)
			}
			return
		}
		enc, err := d.AppendTo(nil)
		if err != nil || !bytes.Equal(enc, data) || d.Len() != len(data) {
			t.Fatalf("re-encoded %x, %v (Len %d); parsed %x", enc, err, d.Len(), data)
		}
		again, err := ParseDUID(enc)
		if err != nil || !reflect.DeepEqual(d, again) {
			t.Fatalf("parsed values differ: %+v, %+v, %v", d, again, err)
		}
		if d.String() == "" {
			t.Fatal("empty String")
		}
	})
}

// FuzzFramer feeds a stream in chunks whose sizes come from the fuzzer and
// checks that the framer returns the same frames and error whatever the
// chunking, the same as a plain reference splitter and as FrameReader.
func FuzzFramer(f *testing.F) {
	for _, v := range loadVectors(f) {
		if v.Kind == "tcp-stream" {
			f.Add(v.bytes, []byte{1, 2, 3, 200}, uint16(0))
			f.Add(v.bytes, []byte{7}, uint16(100))
		}
	}
	f.Add([]byte{0x00, 0x00}, []byte{1}, uint16(0))
	f.Add([]byte{0x00, 0x04, 0x10, 0, 0, 1, 0x01}, []byte{1}, uint16(3))
	f.Fuzz(func(t *testing.T, stream, cuts []byte, maxSize uint16) {
		wantFrames, wantErr := referenceSplit(stream, int(maxSize))

		// Chunked through Framer.
		fr := Framer{MaxSize: int(maxSize)}
		var got [][]byte
		var gotErr error
		rest := stream
		for i := 0; len(rest) > 0 && gotErr == nil; i++ {
			n := len(rest)
			if len(cuts) > 0 {
				n = min(int(cuts[i%len(cuts)])+1, len(rest))
			}
			fr.Feed(rest[:n])
			rest = rest[n:]
			for {
				msg, err := fr.Next()
				if err != nil {
					gotErr = err
					break
				}
				if msg == nil {
					break
				}
				got = append(got, bytes.Clone(msg))
			}
		}
		if gotErr == nil {
			gotErr = fr.EOF()
		}
		compareSplit(t, "Framer", got, gotErr, wantFrames, wantErr)

		// Through FrameReader, in the same chunks.
		reader := NewFrameReader(&chunkReader{data: stream, cuts: cuts}, int(maxSize))
		got, gotErr = nil, nil
		for {
			msg, err := reader.ReadFrame()
			if err != nil {
				if err != io.EOF {
					gotErr = err
				}
				break
			}
			got = append(got, bytes.Clone(msg))
		}
		compareSplit(t, "FrameReader", got, gotErr, wantFrames, wantErr)

		// Frames re-encode to the stream they came from.
		var enc []byte
		for _, msg := range wantFrames {
			var err error
			if enc, err = AppendFrame(enc, msg); err != nil {
				if !errors.Is(err, ErrShortMessage) {
					t.Fatalf("AppendFrame: %v", err)
				}
				enc = append(enc, byte(len(msg)>>8), byte(len(msg)))
				enc = append(enc, msg...)
			}
		}
		if !bytes.Equal(enc, stream[:len(enc)]) {
			t.Fatalf("re-framed %x, stream %x", enc, stream)
		}
	})
}

// referenceSplit splits a framed stream the simple way, as the oracle for
// FuzzFramer.
func referenceSplit(stream []byte, maxSize int) ([][]byte, error) {
	limit := maxSize
	if limit <= 0 || limit > MaxMessageLen {
		limit = MaxMessageLen
	}
	var frames [][]byte
	for len(stream) > 0 {
		if len(stream) < 2 {
			return frames, io.ErrUnexpectedEOF
		}
		n := int(stream[0])<<8 | int(stream[1])
		switch {
		case n == 0:
			return frames, ErrFrameEmpty
		case n > limit:
			return frames, ErrFrameTooLarge
		case len(stream) < 2+n:
			return frames, io.ErrUnexpectedEOF
		}
		frames = append(frames, stream[2:2+n])
		stream = stream[2+n:]
	}
	return frames, nil
}

func compareSplit(t *testing.T, who string, got [][]byte, gotErr error, want [][]byte, wantErr error) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d frames, want %d", who, len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("%s: frame %d = %x, want %x", who, i, got[i], want[i])
		}
	}
	if (gotErr == nil) != (wantErr == nil) || wantErr != nil && !errors.Is(gotErr, wantErr) {
		t.Fatalf("%s: error %v, want %v", who, gotErr, wantErr)
	}
	var fe *FrameError
	if gotErr != nil && !errors.As(gotErr, &fe) {
		t.Fatalf("%s: error %v is not a *FrameError", who, gotErr)
	}
}

// chunkReader returns data in reads whose sizes come from cuts.
type chunkReader struct {
	data []byte
	cuts []byte
	i    int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := len(r.data)
	if len(r.cuts) > 0 {
		n = min(int(r.cuts[r.i%len(r.cuts)])+1, n)
		r.i++
	}
	n = copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}
