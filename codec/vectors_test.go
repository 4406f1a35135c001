package codec

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

// vectorDir holds the wire vectors: one hex file per message or stream,
// vectors.json listing them all, and DECODES.txt with a field-by-field
// reading of each produced by an independent decoder.
const vectorDir = "../testdata/vectors"

// vector is one entry of vectors.json.
type vector struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"` // "message" or "tcp-stream"
	Transport string `json:"transport"`
	Direction string `json:"direction"`
	Length    int    `json:"length"`
	Hex       string `json:"hex"`
	Note      string `json:"note"`

	bytes []byte
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(vectorDir, "vectors.json"))
	if err != nil {
		t.Fatalf("read vectors.json: %v", err)
	}
	var vs []vector
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatalf("parse vectors.json: %v", err)
	}
	if len(vs) == 0 {
		t.Fatal("vectors.json lists no vectors")
	}
	for i := range vs {
		v := &vs[i]
		if v.bytes, err = hex.DecodeString(v.Hex); err != nil {
			t.Fatalf("vector %s: bad hex: %v", v.Name, err)
		}
		if len(v.bytes) != v.Length {
			t.Fatalf("vector %s: %d bytes, vectors.json says %d", v.Name, len(v.bytes), v.Length)
		}
		// The .hex file beside vectors.json must hold the same bytes.
		file, err := os.ReadFile(filepath.Join(vectorDir, v.Name+".hex"))
		if err != nil {
			t.Fatalf("vector %s: %v", v.Name, err)
		}
		if strings.TrimSpace(string(file)) != v.Hex {
			t.Fatalf("vector %s: .hex file differs from vectors.json", v.Name)
		}
	}
	return vs
}

// vectorsOf returns the vectors of one kind.
func vectorsOf(t testing.TB, kind string) []vector {
	var out []vector
	for _, v := range loadVectors(t) {
		if v.Kind == kind {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no vectors of kind %q", kind)
	}
	return out
}

// vectorBytes returns the bytes of the named vector.
func vectorBytes(t testing.TB, name string) []byte {
	t.Helper()
	for _, v := range loadVectors(t) {
		if v.Name == name {
			return v.bytes
		}
	}
	t.Fatalf("no vector named %s", name)
	return nil
}

func TestVectorMessagesRoundTrip(t *testing.T) {
	for _, v := range vectorsOf(t, "message") {
		t.Run(v.Name, func(t *testing.T) {
			var m Message
			if err := m.Decode(v.bytes); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got := m.Len(); got != len(v.bytes) {
				t.Errorf("Len = %d, want %d", got, len(v.bytes))
			}
			out, err := m.AppendTo(nil)
			if err != nil {
				t.Fatalf("AppendTo: %v", err)
			}
			if !bytes.Equal(out, v.bytes) {
				t.Errorf("re-encoded bytes differ\n got %x\nwant %x", out, v.bytes)
			}

			// The framed form must match what the framer splits back out.
			framed, err := m.AppendFrameTo(nil)
			if err != nil {
				t.Fatalf("AppendFrameTo: %v", err)
			}
			var f Framer
			f.Feed(framed)
			msg, err := f.Next()
			if err != nil || !bytes.Equal(msg, v.bytes) {
				t.Errorf("framer returned %x, %v; want the message", msg, err)
			}
		})
	}
}

// TestVectorMessagesTypedRoundTrip decodes every option of every vector with
// its typed decoder and checks that the typed encoder writes the same bytes:
// the vectors list their sub-options in the order the typed encoders use.
func TestVectorMessagesTypedRoundTrip(t *testing.T) {
	for _, v := range vectorsOf(t, "message") {
		t.Run(v.Name, func(t *testing.T) {
			var m Message
			if err := m.Decode(v.bytes); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			for _, o := range m.Options {
				enc, err := typedRoundTrip(o)
				if err != nil {
					t.Fatalf("%v: %v", o.Code, err)
				}
				want, _ := o.AppendTo(nil)
				if !bytes.Equal(enc, want) {
					t.Errorf("%v: typed re-encoding differs\n got %x\nwant %x", o.Code, enc, want)
				}
			}
		})
	}
}

func TestVectorStreams(t *testing.T) {
	for _, v := range vectorsOf(t, "tcp-stream") {
		t.Run(v.Name, func(t *testing.T) {
			want := splitStreamByHand(t, v.bytes)

			// One chunk holding every frame: all returned without copying.
			var f Framer
			f.Feed(v.bytes)
			got := drain(t, &f)
			checkFrames(t, "one chunk", got, want)
			if err := f.EOF(); err != nil {
				t.Errorf("EOF after whole stream: %v", err)
			}

			// Every split point, including inside each 2-octet msg-size.
			for cut := 1; cut < len(v.bytes); cut++ {
				var f Framer
				f.Feed(v.bytes[:cut])
				got := drain(t, &f)
				f.Feed(v.bytes[cut:])
				got = append(got, drain(t, &f)...)
				checkFrames(t, "cut at "+strconv.Itoa(cut), got, want)
			}

			// One octet per chunk.
			f = Framer{}
			got = nil
			for i := range v.bytes {
				f.Feed(v.bytes[i : i+1])
				got = append(got, drain(t, &f)...)
			}
			checkFrames(t, "one octet per chunk", got, want)

			// Through io.Reader, one octet per Read and a final data+EOF read.
			for name, r := range map[string]*FrameReader{
				"OneByteReader": NewFrameReader(iotest.OneByteReader(bytes.NewReader(v.bytes)), 0),
				"DataErrReader": NewFrameReader(iotest.DataErrReader(bytes.NewReader(v.bytes)), 0),
				"HalfReader":    NewFrameReader(iotest.HalfReader(bytes.NewReader(v.bytes)), 0),
			} {
				var got [][]byte
				for {
					msg, err := r.ReadFrame()
					if err != nil {
						if err.Error() != "EOF" {
							t.Errorf("%s: ReadFrame: %v", name, err)
						}
						break
					}
					got = append(got, bytes.Clone(msg))
				}
				checkFrames(t, name, got, want)
			}

			// Each frame decodes and re-encodes to the same framed bytes.
			var out []byte
			for _, msg := range want {
				var m Message
				if err := m.Decode(msg); err != nil {
					t.Fatalf("Decode frame: %v", err)
				}
				var err error
				if out, err = m.AppendFrameTo(out); err != nil {
					t.Fatalf("AppendFrameTo: %v", err)
				}
			}
			if !bytes.Equal(out, v.bytes) {
				t.Errorf("re-encoded stream differs\n got %x\nwant %x", out, v.bytes)
			}
		})
	}
}

// splitStreamByHand splits a framed stream without the Framer, as the
// reference for the framer tests.
func splitStreamByHand(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 2 {
			t.Fatalf("stream ends inside a msg-size")
		}
		n := int(b[0])<<8 | int(b[1])
		if len(b) < 2+n {
			t.Fatalf("stream ends inside a frame")
		}
		out = append(out, b[2:2+n])
		b = b[2+n:]
	}
	if len(out) == 0 {
		t.Fatal("stream holds no frame")
	}
	return out
}

// drain calls Next until it returns no message, copying each one.
func drain(t *testing.T, f *Framer) [][]byte {
	t.Helper()
	var out [][]byte
	for {
		msg, err := f.Next()
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if msg == nil {
			return out
		}
		out = append(out, bytes.Clone(msg))
	}
}

func checkFrames(t *testing.T, how string, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d frames, want %d", how, len(got), len(want))
		return
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("%s: frame %d = %x, want %x", how, i, got[i], want[i])
		}
	}
}
