// Package e2e holds the end-to-end tests of alqd on real input: ISC Kea's
// kea-dhcp6 serves perfdhcp clients, alqd follows Kea's memfile lease file
// as a separate process, and requestors query alqd over TCP with Bulk
// Leasequery (RFC 5460) and Active Leasequery (RFC 7653).
//
// The package has no non-test code. Its tests build cmd/alqd with the go
// command and run it as a child process, exactly as an operator would.
// They need what internal/keatest needs (root, kea-dhcp6, perfdhcp, ip),
// and fail without it unless ALQD_SKIP_KEA=1 is set.
//
// Every process a test starts is stopped by its process ID, and the network
// namespaces are deleted, in t.Cleanup, also when the test fails.
package e2e
