// Package requestor is the client side of DHCPv6 Leasequery: it sends
// queries to a server and turns the answers into typed events.
//
// # What it owns
//
//   - UDP Leasequery (RFC 5007): QueryUDP sends one LEASEQUERY, retransmits it
//     with the LQ_TIMEOUT, LQ_MAX_RT and LQ_MAX_RC parameters, and repeats a
//     QUERY_BY_CLIENTID once per link when the server answers with
//     OPTION_LQ_CLIENT_LINK (RFC 5007 section 4.1.2.5).
//   - Bulk Leasequery over TCP (RFC 5460) with all five query types and the
//     OPTION_LQ_START_TIME and OPTION_LQ_END_TIME filters of RFC 7653 section
//     6.3: Conn.Bulk runs one query, Conn.BulkPipelined several at once on
//     one connection, told apart by transaction-id.
//   - Active Leasequery over TCP (RFC 7653): Conn.Active runs one
//     ACTIVELEASEQUERY on one connection, and Watcher applies the requestor
//     rules of RFC 7653 section 8 across connections: it reconnects no more
//     often than once per ACTIVE_LQ_IDLE_TIMEOUT, closes a connection that
//     stays silent for ACTIVE_LQ_RCV_TIMEOUT, keeps the highest base-time only
//     once catch-up is complete and sends it as OPTION_LQ_START_TIME on the
//     next connection, and answers DataMissing with a Bulk Leasequery for the
//     missing interval on a second connection while the active one goes on.
//   - STARTTLS (RFC 7653 section 8.2) when Config.TLS is set: the connection
//     either becomes a verified TLS connection or is closed; it never falls
//     back to plaintext.
//   - Server times: every event carries the server's OPTION_LQ_BASE_TIME,
//     and the times relative to it (lifetimes, OPTION_CLT_TIME) are converted
//     to local times with a clock-skew estimate kept from the base-times
//     (RFC 7653 section 8.5). Only base-times that are the server's clock
//     when it sent the message move the estimate up; the older ones of
//     catch-up data or of a lagging connection can only lower it.
//
// # What it never does
//
// No logging and no global state. Every goroutine it starts ends before the
// call that started it returns. Events own their memory: a caller may keep
// them. Server outcomes reach the caller as *codec.StatusError, transport
// failures as the sentinels in errors.go (test with errors.Is and
// errors.As, never with the message text).
//
// # Tolerance
//
// Real servers differ, so the decoder accepts a status code in
// LEASEQUERY-DATA (RFC 7653 sends CatchUpComplete and DataMissing there,
// although RFC 5460 section 5.2.1 says DATA should not carry one), several
// addresses and prefixes of one client in one OPTION_CLIENT_DATA, IA_NA,
// IA_TA and IA_PD containers inside OPTION_CLIENT_DATA, a no-match
// LEASEQUERY-REPLY with or without a Success status, OPTION_LQ_BASE_TIME in
// LEASEQUERY-DONE, and options it does not know (kept raw in
// Binding.Options).
package requestor
