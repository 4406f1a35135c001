// Package requestortest provides a scripted leasequery server for tests of
// requestors: a TCP server on loopback whose every connection runs a test
// function that reads the requestor's messages and answers with whatever
// bytes the test chooses (recorded streams, hand-built messages, frames
// split byte by byte, silence, an abrupt close, STARTTLS with a test
// certificate), a UDP server that answers or drops datagrams, builders for
// the server messages of RFC 5007, RFC 5460 and RFC 7653, a throw-away
// certificate authority, and a goroutine leak check.
//
// It is test support: it uses a testing.TB to report failures, listens only
// on 127.0.0.1 port 0, and never validates what the test tells it to send.
package requestortest
