package codec

import (
	"encoding/binary"
	"io"
)

// FrameHeaderLen is the size of the msg-size field that precedes every
// message on a Bulk or Active Leasequery TCP connection (RFC 5460 section
// 5.1, reused by RFC 7653 section 6.1). msg-size counts the message only.
const FrameHeaderLen = 2

// framerKeepBytes is the largest partial-frame buffer a Framer keeps for the
// next partial frame. Buffers grown past it by a large frame are dropped once
// that frame is returned, so that idle connections do not each pin up to
// 64 KiB.
const framerKeepBytes = 4096

// Framer splits a TCP byte stream into messages, one chunk of bytes at a
// time, as a gnet OnTraffic callback or a read loop receives them. A frame
// that lies whole inside a chunk is returned without copying. Only the bytes
// of a frame split across chunks, even inside its 2-octet msg-size, are
// copied into a buffer the Framer owns. A msg-size of 0 or above MaxSize is
// rejected with a *FrameError as soon as the 2 octets are known; that error
// is sticky, because the stream cannot be resynchronised after it.
//
// Use: Feed a chunk, then call Next until it returns a nil message; only then
// Feed the next chunk. A Framer belongs to one connection and is not safe for
// concurrent use. The zero value accepts msg-size up to MaxMessageLen.
type Framer struct {
	// MaxSize is the largest msg-size accepted, in octets; 0 means
	// MaxMessageLen. Set it before the first Feed.
	MaxSize int

	chunk       []byte // unread part of the chunk given to Feed (caller's memory)
	partial     []byte // start of a frame split across chunks, msg-size included
	partialDone bool   // partial holds a frame already returned by Next
	err         error  // first framing error, returned by every later call
}

// Feed hands f the next chunk of the stream. f keeps chunk only until Next
// returns a nil message; by then every byte of it has been returned inside a
// message or copied. Feed panics if the previous chunk has not been drained,
// because the caller would otherwise lose or reorder bytes.
func (f *Framer) Feed(chunk []byte) {
	if len(f.chunk) > 0 {
		panic("codec: Framer.Feed called before Next drained the previous chunk")
	}
	f.chunk = chunk
}

// Next returns the next complete message, without its msg-size, or nil when
// the bytes fed so far end inside a frame (or at a frame boundary). The
// message aliases either the chunk given to Feed or a buffer of f. It is
// valid until the next call to Next or Feed, so copy it to keep it. Errors are
// *FrameError wrapping ErrFrameEmpty or ErrFrameTooLarge.
//
// hot path: no allocation unless a frame is split across chunks.
func (f *Framer) Next() ([]byte, error) {
	if f.err != nil {
		return nil, f.err
	}
	if f.partialDone {
		f.partialDone = false
		f.partial = f.partial[:0]
		if cap(f.partial) > framerKeepBytes {
			f.partial = nil
		}
	}
	if len(f.partial) > 0 {
		return f.nextPartial()
	}

	// Fast path: a whole frame at the start of the chunk.
	chunk := f.chunk
	if len(chunk) == 0 {
		return nil, nil
	}
	if len(chunk) < FrameHeaderLen {
		f.keep(chunk)
		return nil, nil
	}
	size := int(binary.BigEndian.Uint16(chunk))
	if err := f.checkSize(size); err != nil {
		return nil, err
	}
	end := FrameHeaderLen + size
	if len(chunk) < end {
		f.keep(chunk)
		return nil, nil
	}
	f.chunk = chunk[end:]
	return chunk[FrameHeaderLen:end:end], nil
}

// nextPartial continues a frame split across chunks.
func (f *Framer) nextPartial() ([]byte, error) {
	if len(f.partial) < FrameHeaderLen {
		f.take(FrameHeaderLen - len(f.partial))
		if len(f.partial) < FrameHeaderLen {
			return nil, nil
		}
	}
	size := int(binary.BigEndian.Uint16(f.partial))
	if err := f.checkSize(size); err != nil {
		return nil, err
	}
	end := FrameHeaderLen + size
	f.take(end - len(f.partial))
	if len(f.partial) < end {
		return nil, nil
	}
	f.partialDone = true
	return f.partial[FrameHeaderLen:end:end], nil
}

// take moves up to n octets from the chunk to the partial frame.
func (f *Framer) take(n int) {
	n = min(n, len(f.chunk))
	f.partial = append(f.partial, f.chunk[:n]...)
	f.chunk = f.chunk[n:]
}

// keep copies the rest of the chunk, the start of a frame, into the partial
// frame.
func (f *Framer) keep(rest []byte) {
	f.partial = append(f.partial, rest...)
	f.chunk = nil
}

// checkSize records and returns a *FrameError for a msg-size f rejects.
func (f *Framer) checkSize(size int) error {
	limit := f.limit()
	switch {
	case size == 0:
		f.err = &FrameError{Size: 0, Max: limit, Err: ErrFrameEmpty}
	case size > limit:
		f.err = &FrameError{Size: size, Max: limit, Err: ErrFrameTooLarge}
	default:
		return nil
	}
	f.chunk = nil
	return f.err
}

func (f *Framer) limit() int {
	if f.MaxSize <= 0 || f.MaxSize > MaxMessageLen {
		return MaxMessageLen
	}
	return f.MaxSize
}

// Buffered returns how many octets of an incomplete frame f holds, msg-size
// included.
func (f *Framer) Buffered() int {
	if f.partialDone {
		return 0
	}
	return len(f.partial)
}

// EOF reports how the stream ended: nil at a frame boundary, the sticky
// framing error if there was one, or a *FrameError wrapping
// io.ErrUnexpectedEOF when the stream stopped inside a frame (Size is -1 when
// the msg-size itself was incomplete).
func (f *Framer) EOF() error {
	if f.err != nil {
		return f.err
	}
	n := f.Buffered() + len(f.chunk)
	if n == 0 {
		return nil
	}
	size := -1
	if f.Buffered() >= FrameHeaderLen {
		size = int(binary.BigEndian.Uint16(f.partial))
	}
	return &FrameError{Size: size, Max: f.limit(), Err: io.ErrUnexpectedEOF}
}

// Reset empties f for a new stream, keeping MaxSize and its buffer.
func (f *Framer) Reset() {
	f.chunk = nil
	f.partial = f.partial[:0]
	f.partialDone = false
	f.err = nil
}

// frameReadBufferLen is the read buffer of a FrameReader: a few dozen typical
// LEASEQUERY-DATA messages per read system call.
const frameReadBufferLen = 32 << 10

// maxEmptyReads is how many reads in a row may return no data and no error
// before FrameReader gives up with io.ErrNoProgress.
const maxEmptyReads = 100

// FrameReader reads framed messages from an io.Reader such as a net.Conn or a
// tls.Conn. It reads in large blocks and returns messages that alias its own
// buffers. It is not safe for concurrent use.
type FrameReader struct {
	r      io.Reader
	framer Framer
	buf    []byte
	err    error // first read error, returned once the buffered frames are out
}

// NewFrameReader returns a FrameReader on r that accepts msg-size up to
// maxSize octets (0 means MaxMessageLen).
func NewFrameReader(r io.Reader, maxSize int) *FrameReader {
	return &FrameReader{r: r, framer: Framer{MaxSize: maxSize}, buf: make([]byte, frameReadBufferLen)}
}

// ReadFrame returns the next message, without its msg-size. The message is
// valid until the next call to ReadFrame. At a clean end of stream it
// returns io.EOF; a stream that ends inside a frame returns a *FrameError
// wrapping io.ErrUnexpectedEOF, and a bad msg-size a *FrameError wrapping
// ErrFrameEmpty or ErrFrameTooLarge. Read errors are returned as they are,
// after every complete frame read before them.
func (fr *FrameReader) ReadFrame() ([]byte, error) {
	for empty := 0; ; {
		msg, err := fr.framer.Next()
		if err != nil || msg != nil {
			return msg, err
		}
		if fr.err != nil {
			if fr.err == io.EOF {
				if err := fr.framer.EOF(); err != nil {
					return nil, err
				}
			}
			return nil, fr.err
		}

		n, err := fr.r.Read(fr.buf)
		fr.err = err
		if n == 0 && err == nil {
			if empty++; empty >= maxEmptyReads {
				fr.err = io.ErrNoProgress
			}
			continue
		}
		fr.framer.Feed(fr.buf[:n])
	}
}

// BeginFrame appends a msg-size placeholder and returns its offset, to be
// passed to EndFrame once the message has been appended after it.
func BeginFrame(b []byte) ([]byte, int) {
	return append(b, 0, 0), len(b)
}

// EndFrame sets the msg-size of the frame that BeginFrame started at offset
// start to the number of octets appended since. It fails with
// ErrShortMessage for fewer than HeaderLen octets or ErrMessageTooLong for
// more than MaxMessageLen, returning b[:start], which drops the frame.
//
// hot path: writes 2 octets.
func EndFrame(b []byte, start int) ([]byte, error) {
	n := len(b) - start - FrameHeaderLen
	if n < HeaderLen {
		return b[:start], ErrShortMessage
	}
	if n > MaxMessageLen {
		return b[:start], ErrMessageTooLong
	}
	binary.BigEndian.PutUint16(b[start:], uint16(n))
	return b, nil
}

// AppendFrame appends msg behind its 2-octet msg-size. It fails like
// EndFrame, returning b unchanged.
func AppendFrame(b []byte, msg []byte) ([]byte, error) {
	if len(msg) < HeaderLen {
		return b, ErrShortMessage
	}
	if len(msg) > MaxMessageLen {
		return b, ErrMessageTooLong
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
	return append(b, msg...), nil
}
