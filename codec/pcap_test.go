package codec

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// This file writes the classic pcap format with raw IPv6 packets (link
// type 101) carrying UDP datagrams and TCP segments with correct checksums,
// so that tshark can dissect messages this package encodes.

const (
	pcapLinkTypeRaw = 101 // LINKTYPE_RAW: each packet starts with an IP header
	ipProtoTCP      = 6
	ipProtoUDP      = 17

	tcpFlagFIN = 0x01
	tcpFlagSYN = 0x02
	tcpFlagPSH = 0x08
	tcpFlagACK = 0x10
)

// pcapWriter collects packets in memory.
type pcapWriter struct {
	buf  []byte
	when time.Time // timestamp of the next packet
}

func newPCAP(start time.Time) *pcapWriter {
	w := &pcapWriter{when: start}
	w.buf = binary.LittleEndian.AppendUint32(w.buf, 0xa1b2c3d4) // magic, microsecond timestamps
	w.buf = binary.LittleEndian.AppendUint16(w.buf, 2)          // version 2.4
	w.buf = binary.LittleEndian.AppendUint16(w.buf, 4)
	w.buf = binary.LittleEndian.AppendUint32(w.buf, 0)      // thiszone
	w.buf = binary.LittleEndian.AppendUint32(w.buf, 0)      // sigfigs
	w.buf = binary.LittleEndian.AppendUint32(w.buf, 262144) // snaplen
	w.buf = binary.LittleEndian.AppendUint32(w.buf, pcapLinkTypeRaw)
	return w
}

// packet appends one IPv6 packet with the given upper-layer header and
// payload.
func (w *pcapWriter) packet(src, dst netip.Addr, proto byte, upper []byte) {
	pkt := make([]byte, 0, 40+len(upper))
	pkt = append(pkt, 0x60, 0, 0, 0) // version 6, traffic class 0, flow label 0
	pkt = binary.BigEndian.AppendUint16(pkt, uint16(len(upper)))
	pkt = append(pkt, proto, 64) // next header, hop limit
	pkt = append(pkt, src.AsSlice()...)
	pkt = append(pkt, dst.AsSlice()...)
	pkt = append(pkt, upper...)

	w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(w.when.Unix()))
	w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(w.when.Nanosecond()/1000))
	w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(len(pkt)))
	w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(len(pkt)))
	w.buf = append(w.buf, pkt...)
	w.when = w.when.Add(time.Millisecond)
}

// udp appends a UDP datagram.
func (w *pcapWriter) udp(src, dst netip.AddrPort, payload []byte) {
	seg := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(seg[0:], src.Port())
	binary.BigEndian.PutUint16(seg[2:], dst.Port())
	binary.BigEndian.PutUint16(seg[4:], uint16(8+len(payload)))
	seg = append(seg, payload...)
	sum := transportChecksum(src.Addr(), dst.Addr(), ipProtoUDP, seg)
	if sum == 0 {
		sum = 0xffff // RFC 768: a computed 0 is sent as all ones
	}
	binary.BigEndian.PutUint16(seg[6:], sum)
	w.packet(src.Addr(), dst.Addr(), ipProtoUDP, seg)
}

// tcpConn tracks the sequence numbers of one TCP connection.
type tcpConn struct {
	w                 *pcapWriter
	client, server    netip.AddrPort
	clientSeq, srvSeq uint32
}

// openTCP writes the three-way handshake.
func (w *pcapWriter) openTCP(client, server netip.AddrPort) *tcpConn {
	c := &tcpConn{w: w, client: client, server: server, clientSeq: 1000, srvSeq: 5000}
	c.segment(true, tcpFlagSYN, nil)
	c.segment(false, tcpFlagSYN|tcpFlagACK, nil)
	c.segment(true, tcpFlagACK, nil)
	return c
}

// send writes one data segment from the client (fromClient) or the server.
func (c *tcpConn) send(fromClient bool, payload []byte) {
	c.segment(fromClient, tcpFlagPSH|tcpFlagACK, payload)
}

// close writes FIN from both sides and the last ACK.
func (c *tcpConn) close() {
	c.segment(true, tcpFlagFIN|tcpFlagACK, nil)
	c.segment(false, tcpFlagFIN|tcpFlagACK, nil)
	c.segment(true, tcpFlagACK, nil)
}

func (c *tcpConn) segment(fromClient bool, flags byte, payload []byte) {
	src, dst := c.client, c.server
	seq, ack := &c.clientSeq, &c.srvSeq
	if !fromClient {
		src, dst = c.server, c.client
		seq, ack = &c.srvSeq, &c.clientSeq
	}
	ackNum := *ack
	if flags&tcpFlagACK == 0 {
		ackNum = 0
	}
	seg := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(seg[0:], src.Port())
	binary.BigEndian.PutUint16(seg[2:], dst.Port())
	binary.BigEndian.PutUint32(seg[4:], *seq)
	binary.BigEndian.PutUint32(seg[8:], ackNum)
	seg[12] = 5 << 4 // data offset: 5 words, no options
	seg[13] = flags
	binary.BigEndian.PutUint16(seg[14:], 65535) // window
	seg = append(seg, payload...)
	binary.BigEndian.PutUint16(seg[16:], transportChecksum(src.Addr(), dst.Addr(), ipProtoTCP, seg))
	c.w.packet(src.Addr(), dst.Addr(), ipProtoTCP, seg)

	*seq += uint32(len(payload))
	if flags&(tcpFlagSYN|tcpFlagFIN) != 0 {
		*seq++ // SYN and FIN each take one sequence number
	}
}

// transportChecksum computes the UDP or TCP checksum over the IPv6
// pseudo-header (RFC 8200 section 8.1) and the segment, whose checksum
// field must be zero.
func transportChecksum(src, dst netip.Addr, proto byte, seg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	s16, d16 := src.As16(), dst.As16()
	add(s16[:])
	add(d16[:])
	var lenProto [8]byte
	binary.BigEndian.PutUint32(lenProto[0:], uint32(len(seg)))
	lenProto[7] = proto
	add(lenProto[:])
	add(seg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
