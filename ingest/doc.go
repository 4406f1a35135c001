// Package ingest turns DHCPv6 binding changes from outside into
// store.Binding changes and commits them with store.Apply. It has two
// sources:
//
//   - Follower follows the memfile lease file of ISC Kea's kea-dhcp6
//     (tested with Kea 2.2, memfile schema 4.0; columns are mapped by the
//     header, so older and newer schemas work). It survives Kea's lease
//     file cleanup (LFC) and restarts without losing or repeating a change,
//     because it stores its file position in the same Apply as the changes.
//   - Handler serves POST /v1/bindings: newline-delimited JSON records, one
//     binding each, applied all or none (docs/INGEST.md has the format).
//     Client sends bindings to it.
//
// From Kea's user_context (store-extended-info) the parser takes the relay
// chain in both layouts: Kea 2.2's {"ISC":{"relays":[...]}} with the relay
// options as a hex TLV blob, and the {"ISC":{"relay-info":[...]}} of Kea 2.4
// and later. It reads OPTION_INTERFACE_ID (RFC 8415 section 21.18),
// OPTION_REMOTE_ID (RFC 4649) and OPTION_RELAY_ID (RFC 5460 section 5.4.1)
// itself. It rebuilds the Relay-forward chain (RFC 8415 section 9) that
// OPTION_LQ_RELAY_DATA (RFC 5007 section 4.1.2.4) carries. The chain lacks
// the client's message, because Kea does not store it.
//
// The package never serves requestors, never decides what a change means
// for a subscriber, and never writes to Kea's files. It logs only through
// the *slog.Logger given in a config; otherwise it returns errors and counts.
package ingest
