package codec

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"testing/iotest"
)

// frame returns msg behind its msg-size.
func frame(t *testing.T, msg []byte) []byte {
	t.Helper()
	out, err := AppendFrame(nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestFramerZeroCopy(t *testing.T) {
	msg := b(0x10, 0xb1, 0x0c, 0x01) // LEASEQUERY-DONE
	chunk := cat(frame(t, msg), frame(t, msg))
	var f Framer
	f.Feed(chunk)
	first, err := f.Next()
	if err != nil || !bytes.Equal(first, msg) {
		t.Fatalf("Next = %x, %v", first, err)
	}
	if &first[0] != &chunk[2] {
		t.Error("a whole frame inside the chunk was copied")
	}
	second, _ := f.Next()
	if &second[0] != &chunk[8] {
		t.Error("the second whole frame was copied")
	}
	if cap(first) != len(first) {
		t.Error("a returned message can be appended into the next frame")
	}
	if m, err := f.Next(); m != nil || err != nil {
		t.Errorf("Next after the last frame = %x, %v", m, err)
	}
	if f.Buffered() != 0 {
		t.Errorf("Buffered = %d", f.Buffered())
	}
}

func TestFramerSplitSize(t *testing.T) {
	msg := b(0x17, 0x5a, 0x5a, 0x01) // STARTTLS
	stream := frame(t, msg)
	var f Framer
	f.Feed(stream[:1]) // half of the msg-size
	if m, err := f.Next(); m != nil || err != nil {
		t.Fatalf("Next on 1 octet = %x, %v", m, err)
	}
	if f.Buffered() != 1 {
		t.Errorf("Buffered = %d, want 1", f.Buffered())
	}
	if err := f.EOF(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("EOF inside the msg-size = %v", err)
	} else if fe := new(FrameError); errors.As(err, &fe) && fe.Size != -1 {
		t.Errorf("FrameError.Size = %d, want -1", fe.Size)
	}
	f.Feed(stream[1:3]) // rest of the size and one message octet
	if m, err := f.Next(); m != nil || err != nil {
		t.Fatalf("Next = %x, %v", m, err)
	}
	var fe *FrameError
	if err := f.EOF(); !errors.As(err, &fe) || fe.Size != 4 {
		t.Errorf("EOF inside the message = %v", err)
	}
	f.Feed(stream[3:])
	m, err := f.Next()
	if err != nil || !bytes.Equal(m, msg) {
		t.Fatalf("Next = %x, %v", m, err)
	}
	if m, err := f.Next(); m != nil || err != nil {
		t.Errorf("Next after the frame = %x, %v", m, err)
	}
	if err := f.EOF(); err != nil {
		t.Errorf("EOF at a frame boundary = %v", err)
	}
}

func TestFramerRejectsSize(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		chunks [][]byte
		err    error
		size   int
		limit  int
	}{
		{"zero size in one chunk", 0, [][]byte{b(0x00, 0x00, 0x0e)}, ErrFrameEmpty, 0, MaxMessageLen},
		{"zero size split", 0, [][]byte{b(0x00), b(0x00)}, ErrFrameEmpty, 0, MaxMessageLen},
		{"zero size after a frame", 0, [][]byte{b(0x00, 0x04, 0x10, 0, 0, 1, 0x00, 0x00)}, ErrFrameEmpty, 0, MaxMessageLen},
		{"over maximum", 100, [][]byte{b(0x00, 0x65)}, ErrFrameTooLarge, 101, 100},
		{"over maximum split", 100, [][]byte{b(0x01), b(0x00, 0x00)}, ErrFrameTooLarge, 256, 100},
		{"maximum above 65535 means 65535", 1 << 20, [][]byte{b(0x00, 0x00)}, ErrFrameEmpty, 0, MaxMessageLen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := Framer{MaxSize: tt.max}
			var err error
			for _, c := range tt.chunks {
				f.Feed(c)
				for {
					var m []byte
					m, err = f.Next()
					if m == nil || err != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			var fe *FrameError
			if !errors.As(err, &fe) || !errors.Is(err, tt.err) {
				t.Fatalf("error = %v, want a *FrameError with %v", err, tt.err)
			}
			if fe.Size != tt.size || fe.Max != tt.limit {
				t.Errorf("FrameError = %+v, want Size %d Max %d", fe, tt.size, tt.limit)
			}
			// Sticky: the stream cannot be resynchronised.
			f.Feed(frame(t, b(0x10, 0, 0, 1)))
			if _, err2 := f.Next(); err2 != err {
				t.Errorf("Next after the error = %v, want the same error", err2)
			}
			if f.EOF() != err {
				t.Errorf("EOF after the error = %v", f.EOF())
			}
			f.Reset()
			f.Feed(frame(t, b(0x10, 0, 0, 1)))
			if m, err := f.Next(); err != nil || m == nil {
				t.Errorf("Next after Reset = %x, %v", m, err)
			}
		})
	}
}

func TestFramerMaxSizeBoundary(t *testing.T) {
	msg := cat(b(0x11, 0, 0, 1), repeat(0, 96)) // 100 octets
	f := Framer{MaxSize: 100}
	f.Feed(frame(t, msg))
	if m, err := f.Next(); err != nil || len(m) != 100 {
		t.Errorf("100-octet frame with MaxSize 100: %d, %v", len(m), err)
	}
}

func TestFramerFeedBeforeDrainPanics(t *testing.T) {
	var f Framer
	f.Feed(cat(frame(t, b(0x10, 0, 0, 1)), frame(t, b(0x10, 0, 0, 2))))
	if _, err := f.Next(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if recover() == nil {
			t.Error("Feed with a frame still unread did not panic")
		}
	}()
	f.Feed(b(0x00))
}

func TestFramerDropsLargeBuffer(t *testing.T) {
	big := cat(b(0x11, 0, 0, 1), repeat(0, 10000))
	stream := frame(t, big)
	var f Framer
	f.Feed(stream[:5000])
	if m, _ := f.Next(); m != nil {
		t.Fatal("frame returned early")
	}
	f.Feed(stream[5000:])
	m, err := f.Next()
	if err != nil || !bytes.Equal(m, big) {
		t.Fatalf("Next = %d octets, %v", len(m), err)
	}
	if m, _ := f.Next(); m != nil {
		t.Fatal("extra frame")
	}
	if f.partial != nil {
		t.Errorf("Framer kept a %d-octet buffer after a large frame", cap(f.partial))
	}

	// A small split frame keeps its buffer for the next one.
	small := frame(t, b(0x10, 0, 0, 1))
	f.Feed(small[:3])
	f.Next()
	f.Feed(small[3:])
	if m, _ := f.Next(); m == nil {
		t.Fatal("no frame")
	}
	f.Next()
	if f.partial == nil {
		t.Error("Framer dropped a small buffer")
	}
}

// errAfterReader returns its data, then err.
type errAfterReader struct {
	data []byte
	err  error
}

func (r *errAfterReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// emptyReader returns no data and no error forever.
type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

func TestFrameReaderErrors(t *testing.T) {
	done := frame(t, b(0x10, 0xb1, 0x0c, 0x01))
	boom := errors.New("connection reset")

	t.Run("read error after frames", func(t *testing.T) {
		r := NewFrameReader(&errAfterReader{data: cat(done, done), err: boom}, 0)
		for i := 0; i < 2; i++ {
			if m, err := r.ReadFrame(); err != nil || len(m) != 4 {
				t.Fatalf("frame %d: %x, %v", i, m, err)
			}
		}
		if _, err := r.ReadFrame(); err != boom {
			t.Errorf("ReadFrame = %v, want the read error", err)
		}
		if _, err := r.ReadFrame(); err != boom {
			t.Errorf("second ReadFrame = %v, want the same error", err)
		}
	})
	t.Run("EOF inside a frame", func(t *testing.T) {
		r := NewFrameReader(bytes.NewReader(done[:5]), 0)
		_, err := r.ReadFrame()
		var fe *FrameError
		if !errors.As(err, &fe) || !errors.Is(err, io.ErrUnexpectedEOF) || fe.Size != 4 {
			t.Errorf("ReadFrame = %v", err)
		}
	})
	t.Run("clean EOF", func(t *testing.T) {
		r := NewFrameReader(bytes.NewReader(done), 0)
		r.ReadFrame()
		if _, err := r.ReadFrame(); err != io.EOF {
			t.Errorf("ReadFrame = %v, want io.EOF", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		r := NewFrameReader(bytes.NewReader(cat(b(0x04, 0x00), repeat(0, 1024))), 512)
		if _, err := r.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
			t.Errorf("ReadFrame = %v", err)
		}
	})
	t.Run("no progress", func(t *testing.T) {
		r := NewFrameReader(emptyReader{}, 0)
		if _, err := r.ReadFrame(); err != io.ErrNoProgress {
			t.Errorf("ReadFrame = %v, want io.ErrNoProgress", err)
		}
	})
	t.Run("timeout then data", func(t *testing.T) {
		r := NewFrameReader(iotest.TimeoutReader(bytes.NewReader(cat(done, done))), 0)
		if _, err := r.ReadFrame(); err != nil {
			t.Fatal(err)
		}
		if _, err := r.ReadFrame(); err != nil {
			t.Fatal(err)
		}
		if _, err := r.ReadFrame(); err != iotest.ErrTimeout {
			t.Errorf("ReadFrame = %v, want the timeout", err)
		}
	})
}

func TestFrameReaderLargeFrames(t *testing.T) {
	// Frames larger than the read buffer, back to back.
	big := cat(b(0x11, 0, 0, 1), repeat(0xab, 60000))
	stream := cat(frame(t, big), frame(t, b(0x10, 0, 0, 1)), frame(t, big))
	r := NewFrameReader(bytes.NewReader(stream), 0)
	for i, want := range [][]byte{big, b(0x10, 0, 0, 1), big} {
		m, err := r.ReadFrame()
		if err != nil || !bytes.Equal(m, want) {
			t.Fatalf("frame %d: %d octets, %v", i, len(m), err)
		}
	}
	if _, err := r.ReadFrame(); err != io.EOF {
		t.Errorf("ReadFrame = %v, want io.EOF", err)
	}
}

func TestFrameWriters(t *testing.T) {
	msg := b(0x10, 0xb1, 0x0c, 0x01)
	out, err := AppendFrame(b(0xff), msg)
	if err != nil || !bytes.Equal(out, b(0xff, 0x00, 0x04, 0x10, 0xb1, 0x0c, 0x01)) {
		t.Errorf("AppendFrame = %x, %v", out, err)
	}
	if out, err := AppendFrame(b(0xff), b(1, 2, 3)); !errors.Is(err, ErrShortMessage) || len(out) != 1 {
		t.Errorf("AppendFrame of 3 octets = %x, %v", out, err)
	}
	if out, err := AppendFrame(b(0xff), make([]byte, MaxMessageLen+1)); !errors.Is(err, ErrMessageTooLong) || len(out) != 1 {
		t.Errorf("AppendFrame of 65536 octets = %d octets, %v", len(out), err)
	}

	out, start := BeginFrame(b(0xff))
	out, err = EndFrame(out, start)
	if !errors.Is(err, ErrShortMessage) || !bytes.Equal(out, b(0xff)) {
		t.Errorf("EndFrame of an empty frame = %x, %v", out, err)
	}
	out, start = BeginFrame(b(0xff))
	out = append(out, make([]byte, MaxMessageLen+1)...)
	if out, err = EndFrame(out, start); !errors.Is(err, ErrMessageTooLong) || len(out) != 1 {
		t.Errorf("EndFrame of 65536 octets = %d octets, %v", len(out), err)
	}
}

// TestBuildFramedDataFromParts builds the framed c03 vector the way a server
// sends a pre-encoded binding: reserve the msg-size, append the header, the
// base time and the CLIENT_DATA, then patch the size.
func TestBuildFramedDataFromParts(t *testing.T) {
	want := vectorBytes(t, "c03_bulk_data_second_binding")
	var m Message
	if err := m.Decode(want); err != nil {
		t.Fatal(err)
	}
	clientData, _ := m.Options.ClientData()
	encodedClientData, err := AppendOption(nil, OptClientData, clientData)
	if err != nil {
		t.Fatal(err)
	}

	buf, start := BeginFrame(nil)
	buf, err = AppendHeader(buf, MsgLeasequeryData, 0xb10c01)
	if err != nil {
		t.Fatal(err)
	}
	buf = AppendUint32Option(buf, OptLQBaseTime, 820540800)
	buf = append(buf, encodedClientData...)
	buf, err = EndFrame(buf, start)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, frame(t, want)) {
		t.Errorf("built frame\n got %x\nwant %x", buf, frame(t, want))
	}
	if _, err := AppendHeader(nil, MsgLeasequery, 1<<24); !errors.Is(err, ErrTransactionID) {
		t.Errorf("AppendHeader with a 25-bit xid: %v", err)
	}
	if _, err := AppendHeader(nil, MsgRelayForw, 1); !errors.Is(err, ErrRelayType) {
		t.Errorf("AppendHeader with RELAY-FORW: %v", err)
	}
}

func TestFrameErrorMessage(t *testing.T) {
	err := &FrameError{Size: 70000, Max: 65535, Err: ErrFrameTooLarge}
	want := "codec: frame msg-size 70000 (maximum 65535): frame msg-size above the configured maximum"
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}

func TestFrameReaderNetConn(t *testing.T) {
	// A net.Conn peer writes the bulk vector stream in uneven pieces.
	stream := vectorBytes(t, "stream_bulk_s2c")
	client, server := net.Pipe()
	defer client.Close()
	go func() {
		defer server.Close()
		for rest, n := stream, 1; len(rest) > 0; n = n*3%97 + 1 {
			n = min(n, len(rest))
			if _, err := server.Write(rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
		}
	}()
	r := NewFrameReader(client, 0)
	want := splitStreamByHand(t, stream)
	for i, w := range want {
		msg, err := r.ReadFrame()
		if err != nil || !bytes.Equal(msg, w) {
			t.Fatalf("frame %d: %x, %v", i, msg, err)
		}
	}
	if _, err := r.ReadFrame(); err != io.EOF {
		t.Errorf("ReadFrame after the stream = %v, want io.EOF", err)
	}
}
