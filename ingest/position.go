package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// DefaultPositionKey is the store metadata key under which a Follower keeps
// its position when FollowerConfig.PositionKey is empty.
const DefaultPositionKey = "ingest/kea/position"

// position is where a follower stands in the live lease file. It is stored
// in the store's metadata in the same Apply as the changes read up to it, so
// after a restart the store holds exactly the changes before the position.
//
// Encoding (big endian, 42 bytes):
//
//	+---------+-------+-----+-------+--------+------+---------+---------+
//	| version | flags | dev | inode | offset | line | lastLen | lastCRC |
//	|    1    |   1   |  8  |   8   |   8    |  8   |    4    |    4    |
//	+---------+-------+-----+-------+--------+------+---------+---------+
//
// An inode number alone does not identify a file: ext4 and others hand the
// number of a deleted file (Kea's ".1" after LFC) to the next file created.
// lastLen and lastCRC describe the last line consumed, which ends at offset
// and contains the row's expire time, so a different file at the same inode
// almost surely fails the check.
type position struct {
	complete bool   // false while a full load is in progress (see Follower)
	dev      uint64 // st_dev of the file
	inode    uint64 // st_ino of the file
	offset   int64  // bytes consumed: the end of the last complete line read
	line     int64  // lines consumed, the header included
	lastLen  uint32 // length of the last consumed line, newline included
	lastCRC  uint32 // CRC-32C of that line
}

const (
	positionVersion  = 1
	positionLen      = 42
	positionComplete = 1 << 0
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var errPosition = errors.New("ingest: invalid stored position")

func (p *position) appendTo(b []byte) []byte {
	var flags byte
	if p.complete {
		flags |= positionComplete
	}
	b = append(b, positionVersion, flags)
	b = binary.BigEndian.AppendUint64(b, p.dev)
	b = binary.BigEndian.AppendUint64(b, p.inode)
	b = binary.BigEndian.AppendUint64(b, uint64(p.offset))
	b = binary.BigEndian.AppendUint64(b, uint64(p.line))
	b = binary.BigEndian.AppendUint32(b, p.lastLen)
	return binary.BigEndian.AppendUint32(b, p.lastCRC)
}

func (p *position) decode(b []byte) error {
	if len(b) != positionLen || b[0] != positionVersion {
		return fmt.Errorf("%w: %d bytes, version %d", errPosition, len(b), firstByte(b))
	}
	*p = position{
		complete: b[1]&positionComplete != 0,
		dev:      binary.BigEndian.Uint64(b[2:]),
		inode:    binary.BigEndian.Uint64(b[10:]),
		offset:   int64(binary.BigEndian.Uint64(b[18:])),
		line:     int64(binary.BigEndian.Uint64(b[26:])),
		lastLen:  binary.BigEndian.Uint32(b[34:]),
		lastCRC:  binary.BigEndian.Uint32(b[38:]),
	}
	if p.offset < 0 || p.line < 0 || int64(p.lastLen) > p.offset {
		return fmt.Errorf("%w: offset %d, line %d, last line of %d bytes", errPosition, p.offset, p.line, p.lastLen)
	}
	return nil
}

func firstByte(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}
