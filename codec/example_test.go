package codec_test

import (
	"fmt"
	"net/netip"

	"github.com/alqd/alqd/codec"
)

// A server builds a framed LEASEQUERY-DATA straight into its output buffer:
// reserve the msg-size, append the header and options, then patch the size.
func ExampleBeginFrame() {
	binding := codec.ClientData{
		ClientID:   []byte{0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x5e, 0x00, 0x53, 0x01}, // DUID-LL
		CLTTime:    60,
		HasCLTTime: true,
		Addrs:      []codec.IAAddr{{Addr: netip.MustParseAddr("2001:db8:1::10"), PreferredLifetime: 1740, ValidLifetime: 3540}},
	}

	out := make([]byte, 0, 512) // reused from one message to the next
	out, start := codec.BeginFrame(out)
	out, err := codec.AppendHeader(out, codec.MsgLeasequeryData, 0xa1a001)
	if err != nil {
		panic(err)
	}
	out = codec.AppendUint32Option(out, codec.OptLQBaseTime, 820540800)
	if out, err = binding.AppendTo(out); err != nil {
		panic(err)
	}
	if out, err = codec.EndFrame(out, start); err != nil {
		panic(err)
	}
	fmt.Printf("%d octets, msg-size %d\n", len(out), int(out[0])<<8|int(out[1]))
	// Output: 68 octets, msg-size 66
}

// A gnet OnTraffic callback feeds each chunk it reads to the connection's
// Framer and handles every complete message before the callback returns.
func ExampleFramer() {
	stream := []byte{
		0x00, 0x04, 0x10, 0xb1, 0x0c, 0x01, // LEASEQUERY-DONE
		0x00, 0x0c, 0x11, 0xa1, 0xa0, 0x01, 0x00, 0x64, 0x00, 0x04, 0x30, 0xe8, 0x75, 0xbd, // LEASEQUERY-DATA
	}
	var framer codec.Framer                                  // one per connection
	var msg codec.Message                                    // reused for every message
	for _, chunk := range [][]byte{stream[:9], stream[9:]} { // what two reads returned
		framer.Feed(chunk)
		for {
			frame, err := framer.Next()
			if err != nil {
				fmt.Println("close the connection:", err)
				return
			}
			if frame == nil {
				break // wait for the next chunk
			}
			if err := msg.Decode(frame); err != nil {
				fmt.Println("close the connection:", err)
				return
			}
			base, _ := msg.Options.BaseTime()
			fmt.Printf("%v xid=%#x base-time=%d\n", msg.Type, msg.TransactionID, base)
		}
	}
	// Output:
	// LEASEQUERY-DONE xid=0xb10c01 base-time=0
	// LEASEQUERY-DATA xid=0xa1a001 base-time=820540861
}

// A server checks the OPTION_LQ_QUERY of a LEASEQUERY and turns a rejection
// into the OPTION_STATUS_CODE of its reply.
func ExampleLQQuery_Validate() {
	query := []byte{
		0x0e, 0xb1, 0x0c, 0x03, // LEASEQUERY
		0x00, 0x2c, 0x00, 0x11, // LQ_QUERY, option-len 17
		0x04,                                           // QUERY_BY_LINK_ADDRESS
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // link-address ::
	}
	var m codec.Message
	if err := m.Decode(query); err != nil {
		panic(err)
	}
	var q codec.LQQuery
	if _, err := m.Options.LQQuery(&q); err != nil {
		panic(err)
	}
	if err := q.Validate(); err != nil {
		status := err.(*codec.StatusError)
		opt, _ := status.AppendOption(nil)
		fmt.Printf("%v: %s (%d octets)\n", status.Code, status.Msg, len(opt))
	}
	// Output: MalformedQuery: QUERY_BY_LINK_ADDRESS needs a link-address other than :: (62 octets)
}
