// Package loadgen generates load for alqd: binding churn on the input side
// and a swarm of Active Leasequery requestors (RFC 7653) on the output side,
// and measures what comes out.
//
// # Churn
//
// Churn simulates the binding changes of a DHCPv6 server (RFC 8415): a
// client population spread over links and relay agents, each client with an
// IA_NA address and maybe an IA_PD prefix, getting new bindings, renewing,
// releasing and letting them expire. The sequence of changes depends only
// on the seed and the settings. RunChurn paces the changes at a target rate
// into a Sink. The sinks are alqd's ingest API (NewIngestSink), any
// ingest.Applier such as a store (NewApplierSink), and a lease file in the
// exact format of Kea 2.2's memfile backend with Kea's lease file cleanup
// (KeaWriter), on which alqd's Kea follower can run. Benchmarks and tests
// can also take batches of store.Binding from Churn.Next directly.
//
// # Latency stamps
//
// Every change can carry its send time (StampMode): in the client DUID, a
// DUID-EN of the documentation enterprise number 32473 (RFC 5612), or in a
// vendor option of the relay's Relay-forward. The server passes both through
// to requestors unchanged, so a requestor on the same machine computes the
// latency from send to receipt without relying on the whole-second
// OPTION_LQ_BASE_TIME.
//
// # Swarm
//
// RunSwarm opens many TCP connections to a server, each sending one
// ACTIVELEASEQUERY, unfiltered or filtered with OPTION_LQ_QUERY
// QUERY_BY_RELAY_ID (RFC 5460 section 5.3), optionally after STARTTLS (RFC
// 7653 section 8.2). Some connections read slowly or never, to exercise the
// server's handling of slow requestors. Connections bind local addresses
// from a list (127.0.0.1 to 127.0.0.N on loopback) so that their number is
// not bound by one address's ephemeral ports. It decodes every message,
// counts what fails to decode, measures per-connection throughput and the
// stamp latency in an HDR histogram, and returns a SwarmSummary. Summaries
// of several processes merge with MergeSwarmSummaries.
//
// # What it never does
//
// It never logs: progress goes to the callbacks in RunConfig and
// SwarmConfig. It aims only where it is told; RequireLoopback is the check
// the command uses to keep targets on loopback unless allowed otherwise.
package loadgen
