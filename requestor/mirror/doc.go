// Package mirror keeps a local copy of a DHCPv6 server's bindings in a
// Pebble database, current through Active Leasequery (RFC 7653), and
// resumes where it stopped after a restart of either side.
//
// # How it fills and follows
//
// A Mirror runs a requestor.Watcher. With an empty database it first brings
// the copy up to date the way RFC 7653 section 4 describes. A Bulk
// Leasequery runs the configured queries, for example one
// QUERY_BY_LINK_ADDRESS per link. Then the active query asks for catch-up
// from the earliest base-time of that bulk, so that changes made while the
// bulk ran arrive as catch-up. Without bulk queries it asks the active query
// itself for catch-up from start time 0, which a server whose history
// holds every current binding (as alqd's does) answers with all of them.
// After DataMissing it runs, on a second connection, the configured bulk
// queries for the missing interval (RFC 7653 section 8.4.1). Unless
// Config.WindowedRecovery is set, it also runs the same queries without
// times. After such a full bulk, an active record that no reply reported
// since it began is a binding the server removed, and is marked ended (see
// Swept).
//
// # What it stores, and when
//
// Every binding event and the Watcher's checkpoint after it are written in
// one Pebble batch, so the stored start time never runs ahead of the
// bindings it covers. A crash loses at most a suffix of the write-ahead log,
// checkpoint included, and the next run fetches that suffix again as
// catch-up; Config.Sync only decides how long that suffix can be.
//
// The initial bulk, the recovery bulk and the active connection deliver in
// parallel, so an older state could arrive after a newer one. Each record
// keeps the server time its state is known to be current at (Record.AsOf),
// and a binding is only replaced by a state current at a later time, or at
// the same time from the active connection.
//
// Ended bindings (valid lifetime 0) are kept as tombstones for
// Config.TombstoneRetention, so that a late older message cannot bring them
// back, then pruned.
//
// # What it never does
//
// It never logs except through the logger given with WithLogger (Pebble's
// own errors), never changes the server, and follows one server: a
// database records the server it was filled from and refuses another.
package mirror
