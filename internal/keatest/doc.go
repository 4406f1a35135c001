// Package keatest runs a real ISC Kea DHCPv6 server (kea-dhcp6 2.2, memfile
// lease backend) against perfdhcp traffic, so that tests of alqd can read real
// DHCPv6 bindings. They come as a memfile lease file that grows, is compacted
// by LFC and carries relay information, and as the same leases through Kea's
// control socket.
//
// The package owns, for the life of one test:
//
//   - two network namespaces joined by a veth pair (Topology): the server
//     namespace holds 2001:db8:1::1/64 for Kea; the client namespace holds
//     2001:db8:1::2/64 for perfdhcp and 2001:db8:1::3/64 for the relay shim;
//   - one kea-dhcp6 process in the server namespace (Kea), configured from
//     testdata/kea/kea-dhcp6.json.tmpl with its work directory, lease file and
//     control socket in a private temporary directory;
//   - a relay shim (RelayShim) in the client namespace that adds
//     Interface-ID (RFC 8415 section 21.18), Remote-ID (RFC 4649) and
//     Relay-ID (RFC 5460 section 5.4.1) options to the Relay-forward messages
//     of perfdhcp, which in Kea 2.2 sends none of them;
//   - bounded perfdhcp runs (Load), direct or relayed.
//
// Everything is stopped by process ID and deleted in t.Cleanup, also when the
// test fails. The package never touches interfaces, addresses or processes
// outside the namespaces it creates, except that NewTopology removes
// namespaces (and the processes inside them) left by an earlier run of this
// package that crashed.
//
// The tests that use it need root, kea-dhcp6, perfdhcp (package kea-admin),
// the lease_cmds hook and ip (iproute2). Require fails the test when any is
// missing, unless ALQD_SKIP_KEA=1 is set, in which case it skips the test with
// that reason. .ci/run installs everything and runs the tests as root.
//
// The package does not depend on the alqd codec: the few relay options it
// writes and reads are encoded by hand.
package keatest
