// Package store is alqd's lease state database on Pebble. It holds the
// current binding of every IA_NA address, IA_TA address and IA_PD prefix,
// and secondary indexes for the query types of OPTION_LQ_QUERY: by address
// and by client DUID from RFC 5007 section 4.1.2.1, by relay-id,
// link-address and remote-id from RFC 5460. It also holds the change
// history that Active Leasequery catch-up reads (RFC 7653 sections 7 and
// 8.4: the current state of every binding changed since a start time), with
// a floor below which trimmed tombstones are missing and the server replies
// with DataMissing.
//
// The store owns the Pebble key layout (keys.go), the binding value
// encoding (value.go), group commit with a synced write-ahead log
// (writer.go), the iterators (iter.go), trimming (trim.go), the
// consistency check (verify.go), and the backup stream with its restore
// (backup.go, backup_restore.go). It assigns every change its sequence
// number and server time and tells subscribers about it only after the
// sync, so nothing a requestor saw can be lost by a crash.
//
// It never does networking, never encodes DHCPv6 messages and never logs;
// Pebble's own messages go to the slog.Logger in Options.
package store
