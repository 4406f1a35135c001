// Package bench is alqd's end-to-end benchmark harness. It runs each
// Active Leasequery fanout contender on loopback and puts the same load
// through each. It reports ratios against anchors measured in the same run,
// because absolute numbers from a shared or small machine do not compare.
//
// # Contenders
//
//   - alqd: the server package on the store package, fed through
//     store.Apply as the ingest API feeds it, read with ACTIVELEASEQUERY
//     (RFC 7653).
//   - raw: the limit, a minimal epoll writer with one goroutine per core
//     that writes frames encoded once to every socket (raw.go).
//   - nats: nats-server embedded in a child process, with a nats.go
//     publisher and nats.go subscribers.
//   - goroutine: one goroutine, net.Conn and bufio.Writer per connection,
//     fed by a channel.
//
// A contender that cannot run in this build (alqd before it served Active
// Leasequery) is reported as not available with its reason, never
// measured by a stand-in.
//
// # Processes
//
// Run is the orchestrator. It starts its own executable again as child
// processes (ChildEnv names the role): one server child per measurement,
// which runs the contender and its producer, and client children that hold
// the subscriber connections (at most a few thousand each, because a
// process may have 20,000 descriptors). Children take one JSON request per
// line on stdin and write one JSON response line on stdout. They exit when
// stdin closes, and after a fixed lifetime whatever happens. Each child's CPU
// time and memory come from /proc, so server and client costs are
// counted apart.
//
// # Scenarios
//
// fanout (every message to every subscriber, by connection count and frame
// size), filtered (one relay-id per subscriber, RFC 5460 QUERY_BY_RELAY_ID),
// idle (server memory per idle connection), slow (a tenth of the
// subscribers stop reading) and store (durable ingest, Bulk Leasequery
// dump, catch-up by OPTION_LQ_START_TIME). Goals are checked and printed as
// PASS or MISS; they never fail a run. Run fails only when a child process
// crashes or a received message fails to decode.
//
// # What it never does
//
// It listens and connects on 127.0.0.1 only, with ephemeral ports; every
// load is bounded in count and time. It is not imported by the server.
package bench
