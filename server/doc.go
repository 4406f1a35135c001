// Package server answers DHCPv6 leasequeries from the binding store: Bulk
// Leasequery over TCP (RFC 5460, with the OPTION_LQ_START_TIME and
// OPTION_LQ_END_TIME selection and OPTION_LQ_BASE_TIME of RFC 7653 section
// 6.3) and Active Leasequery (RFC 7653) on gnet event loops, and Leasequery
// over UDP (RFC 5007), directly or inside RELAY-FORW.
//
// # What it owns
//
//   - The per-connection state machine (conn.go): framing of RFC 5460
//     section 5.1 read straight from gnet's input buffer, a queue of
//     pipelined queries with duplicate transaction-id detection, one bulk
//     query running at a time, and the close reasons.
//   - Bulk queries (bulk.go, run.go): a producer goroutine per query scans
//     the store and encodes chunks of frames that the event loop writes,
//     with credit-based flow control on the connection's pending output.
//   - Limits and timeouts: connections in total and per requestor, bulk
//     queries per requestor, pipelined queries per connection, message size,
//     idle timeout and BULK_LQ_DATA_TIMEOUT, enforced by per-loop sweeps
//     that gnet's ticker schedules; RLIMIT_NOFILE raised at start.
//   - Reply construction shared by every transport (request.go,
//     selection.go, encode.go): query checks with the RFC status codes, the
//     OPTION_CLIENT_DATA body per client and link, the per-message wrapper,
//     the deny list of optional options.
//   - Active Leasequery (active.go, activeloop.go, publish.go): the store's
//     commit subscription encodes each changed binding once and publishes
//     it to a fanout ring; each event loop pumps its fanout group and
//     writes a connection's pending updates with one writev. Catch-up from
//     OPTION_LQ_START_TIME, DataMissing below the history floor,
//     CatchUpComplete, keepalives (ACTIVE_LQ_IDLE_TIMEOUT), blocked
//     connections resumed from the store and closed after
//     ACTIVE_LQ_SEND_TIMEOUT, and LEASEQUERY-DONE at shutdown.
//   - Secure mode (tls.go, tlsconn.go, tlsactive.go): STARTTLS and mutual
//     TLS (RFC 7653 sections 8.2 and 9.1). At STARTTLS the event loop hands
//     the socket, and any bytes it read past the STARTTLS frame, to a
//     crypto/tls goroutine that serves bulk queries with the same job code
//     and Active Leasequery through fanout groups of its own (tlsHub). The
//     requestor certificate allow-list, and certificates reloaded without
//     dropping connections (Server.ReloadTLS).
//   - Logging (log/slog) and Prometheus metrics (metrics.go).
//
// # What it never does
//
// It never writes to the store and never parses configuration files or
// flags (cmd/alqd does). Bulk and UDP store reads run on producer
// goroutines and the UDP goroutine. Active Leasequery reads the store on
// the event loop only in bounded steps: one seek for a catch-up start, and
// store scans for catching-up and lagging connections that fanout caps per
// Pump (fanout.Config.ResyncBudget).
//
// Without Config.Active, ACTIVELEASEQUERY gets LEASEQUERY-REPLY NotSupported
// and the connection closes (RFC 7653 section 9.2). Without Config.TLS,
// STARTTLS gets REPLY with TLSConnectionRefused (section 9.1).
package server
