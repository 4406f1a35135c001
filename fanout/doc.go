// Package fanout carries committed binding updates from the store to every
// Active Leasequery connection (RFC 7653): a lock-free ring of immutable,
// pre-encoded updates, one cursor per subscriber, and a per-event-loop index
// from filter key to subscribers.
//
// # Data flow
//
// The store's single writer publishes each synced commit to a Ring
// (Ring.Publish). Each event loop owns a Group; Publish wakes a group at most
// once until it has pumped, through a function the server supplies (for gnet,
// one that calls EventLoop.Execute). Group.Pump then walks the new ring
// entries once and hands every subscriber with pending updates one batch,
// which the server writes with one writev. Bodies are encoded once per view
// and shared by all connections; fanout never looks inside them.
//
// # Slow consumers
//
// A subscriber whose write the kernel refused is blocked (RFC 7653 section
// 2): it keeps only its cursor, the Seq of the last update it was handed.
// One whose next update has been overwritten in the ring is lapped. Both
// resume from the store's last-change index (Source.ChangedSince), which
// yields each changed binding once in its current state, as RFC 7653 section
// 7 allows, and rejoin the ring without gaps or duplicates once the ring
// covers their cursor. Memory per lagging subscriber does not grow with lag.
//
// # Driving it from a server
//
//   - Start: NewRing with the store's last Seq; Ring.NewGroup per event loop
//     with a Source and a wake function that schedules Group.Pump on the
//     loop; store commits go to Ring.Publish.
//   - ACTIVELEASEQUERY accepted: Group.Subscribe with the query's Filter and
//     Ring.LastSeq (or the Seq before the requested start time). If
//     Subscriber.CatchingUp is false there is nothing to catch up on;
//     otherwise Sink.CaughtUp reports the end of the catch-up.
//   - Pump: Sink.Deliver writes the batch (at most Config.MaxBatch updates)
//     and reports how much was written and whether the socket is blocked.
//   - Write blocked elsewhere: Group.Block. Writable again: Group.Unblock.
//   - Store scan failed: Sink.Failed. Connection closed: Group.Remove.
//
// # What it does not do
//
// fanout does no I/O, encodes nothing, never logs, starts no goroutines and
// never blocks the producer. Timeouts (ACTIVE_LQ_SEND_TIMEOUT for blocked
// connections) and the DataMissing decision for start times below the
// store's history floor belong to the server.
package fanout
