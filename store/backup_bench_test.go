package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// backupBenchBindings is the population of the backup benchmarks.
const backupBenchBindings = 100_000

// openBackupBench returns a store of backupBenchBindings relayed IA_NA
// bindings on 64 links, loaded without syncs.
func openBackupBench(b *testing.B) *Store {
	b.Helper()
	s := openTest(b, b.TempDir(), Options{NoSync: true})
	rng := rand.New(rand.NewPCG(1, 2))
	batch := make([]Binding, 0, 4096)
	for i := range backupBenchBindings {
		batch = append(batch, backupBenchBinding(i, rng))
		if len(batch) == cap(batch) || i == backupBenchBindings-1 {
			if _, err := s.Apply(context.Background(), batch, nil); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	return s
}

// backupBenchBinding returns benchBinding(i, 64) with random values in
// the fields that differ between real clients. Its DUID-LL has a random
// MAC address, and so has its IAID. Its relay message carries the
// client's EUI-64 link-local address, the relay's Interface-ID and a
// Remote-ID with a random circuit. Without them the synthetic bindings
// compress several times better than real ones.
func backupBenchBinding(i int, rng *rand.Rand) Binding {
	b := benchBinding(i, 64)
	var mac [6]byte
	binary.BigEndian.PutUint16(mac[:], uint16(rng.Uint32()))
	binary.BigEndian.PutUint32(mac[2:], rng.Uint32())
	b.ClientID = append([]byte{0, 3, 0, 1}, mac[:]...) // DUID-LL, Ethernet
	b.IAID = rng.Uint32()
	b.RemoteID = fmt.Appendf([]byte{0, 0, 0x0d, 0xe9}, "olt-%d/pon-%d/ont-%d", i%64, rng.IntN(16), rng.IntN(128))

	// RELAY-FORW: msg-type, hop-count, link-address, peer-address.
	peer := [16]byte{0: 0xfe, 1: 0x80, 8: mac[0] ^ 2, 9: mac[1], 10: mac[2], 11: 0xff, 12: 0xfe, 13: mac[3], 14: mac[4], 15: mac[5]}
	link := b.LinkAddress.As16()
	msg := append([]byte{12, 0}, link[:]...)
	msg = append(msg, peer[:]...)
	msg = binary.BigEndian.AppendUint16(msg, 18) // OPTION_INTERFACE_ID
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(b.InterfaceID)))
	msg = append(msg, b.InterfaceID...)
	msg = binary.BigEndian.AppendUint16(msg, 37) // OPTION_REMOTE_ID
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(b.RemoteID)))
	b.RelayMessage = append(msg, b.RemoteID...)
	b.RelayPeer = netip.AddrFrom16(peer)
	return b
}

// rawCopy copies every key and value of the current view to io.Discard:
// the floor under which no backup of the same view can go.
func rawCopy(b *testing.B, s *Store) time.Duration {
	b.Helper()
	began := time.Now()
	v, err := s.acquireView()
	if err != nil {
		b.Fatal(err)
	}
	defer s.releaseView(v)
	it, err := v.snap.NewIter(nil)
	if err != nil {
		b.Fatal(err)
	}
	var scratch []byte
	for valid := it.First(); valid; valid = it.Next() {
		value, err := it.ValueAndErr()
		if err != nil {
			b.Fatal(err)
		}
		scratch = append(append(scratch[:0], it.Key()...), value...)
		_, _ = io.Discard.Write(scratch)
	}
	if err := it.Close(); err != nil {
		b.Fatal(err)
	}
	return time.Since(began)
}

// minDuration returns the shortest of n runs of fn.
func minDuration(n int, fn func() time.Duration) time.Duration {
	best := fn()
	for range n - 1 {
		best = min(best, fn())
	}
	return best
}

// BenchmarkBackup measures Backup of 100,000 relayed bindings to
// io.Discard. It reports the time per binding and the stream size as a
// fraction of the raw key and value bytes. The anchor, x-raw-copy, is the
// time per op divided by the time to copy the same view's raw bytes to
// io.Discard, measured in the same run.
func BenchmarkBackup(b *testing.B) {
	s := openBackupBench(b)
	anchor := minDuration(3, func() time.Duration { return rawCopy(b, s) })

	b.ReportAllocs()
	b.ResetTimer()
	var info BackupInfo
	for b.Loop() {
		var err error
		if info, err = s.Backup(context.Background(), io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	perOp := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(perOp.Nanoseconds())/float64(info.Bindings), "ns/binding")
	b.ReportMetric(info.Ratio(), "stream/raw")
	b.ReportMetric(float64(info.RawBytes)/float64(info.Bindings), "raw-B/binding")
	b.ReportMetric(float64(perOp)/float64(anchor), "x-raw-copy")
}

// BenchmarkBackupLevel compares the zstd levels on the same store: time
// per binding and the stream size as a fraction of the raw bytes.
func BenchmarkBackupLevel(b *testing.B) {
	s := openBackupBench(b)
	for _, level := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression, zstd.SpeedBestCompression} {
		b.Run("level="+level.String(), func(b *testing.B) {
			b.ReportAllocs()
			var info BackupInfo
			for b.Loop() {
				var err error
				if info, err = s.backup(context.Background(), io.Discard, level); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(info.Bindings), "ns/binding")
			b.ReportMetric(info.Ratio(), "stream/raw")
		})
	}
}

// BenchmarkRestore measures Restore of a backup of 100,000 relayed
// bindings, including the Open and Verify before the rename. It reports
// the time per binding. The anchor, x-decompress, is the time per op
// divided by the time to decompress the same stream to io.Discard,
// measured in the same run.
func BenchmarkRestore(b *testing.B) {
	s := openBackupBench(b)
	var stream bytes.Buffer
	info, err := s.Backup(context.Background(), &stream)
	if err != nil {
		b.Fatal(err)
	}
	anchor := minDuration(3, func() time.Duration {
		began := time.Now()
		zr, err := zstd.NewReader(bytes.NewReader(stream.Bytes()), zstd.WithDecoderConcurrency(1))
		if err != nil {
			b.Fatal(err)
		}
		defer zr.Close()
		if _, err := io.Copy(io.Discard, zr); err != nil {
			b.Fatal(err)
		}
		return time.Since(began)
	})

	parent := b.TempDir()
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		dir := filepath.Join(parent, strconv.Itoa(i))
		i++
		if _, err := Restore(context.Background(), dir, bytes.NewReader(stream.Bytes()), Options{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	perOp := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(perOp.Nanoseconds())/float64(info.Bindings), "ns/binding")
	b.ReportMetric(float64(perOp)/float64(anchor), "x-decompress")
}
