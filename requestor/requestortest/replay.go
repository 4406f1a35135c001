package requestortest

import (
	"fmt"

	"github.com/alqd/alqd/codec"
)

// Replay answers a recorded TCP exchange. c2s and s2c are the framed byte
// streams of the recording, requestor to server and server to requestor.
// Replay reads one message from the requestor per frame of c2s, maps the
// recorded transaction-id of each to the one the requestor used in the
// same position, and then sends s2c with every transaction-id mapped,
// chunk octets per write (0 writes it at once). It returns the requestor's
// messages so that the test can compare them with the recording.
func (c *Conn) Replay(c2s, s2c []byte, chunk int) ([]Received, error) {
	queries, err := Frames(c2s)
	if err != nil {
		return nil, err
	}
	answers, err := Frames(s2c)
	if err != nil {
		return nil, err
	}

	xids := make(map[uint32]uint32, len(queries))
	got := make([]Received, 0, len(queries))
	for i, q := range queries {
		r, err := c.ReadMessage()
		if err != nil {
			return got, fmt.Errorf("requestortest: reading query %d of %d: %w", i+1, len(queries), err)
		}
		if r.Err != nil {
			return got, fmt.Errorf("requestortest: query %d does not decode: %w", i+1, r.Err)
		}
		xids[XID(q)] = r.Msg.TransactionID
		got = append(got, r)
	}

	var out []byte
	for i, a := range answers {
		mapped, ok := xids[XID(a)]
		if !ok {
			return got, fmt.Errorf("requestortest: answer %d has transaction-id %#06x, which no recorded query used", i+1, XID(a))
		}
		if out, err = codec.AppendFrame(out, WithXID(a, mapped)); err != nil {
			return got, err
		}
	}
	if chunk <= 0 {
		return got, c.Write(out)
	}
	return got, c.WriteSplit(out, chunk, 0)
}
