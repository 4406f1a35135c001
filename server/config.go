package server

import (
	"fmt"
	"net/netip"
	"runtime"
	"time"

	"github.com/alqd/alqd/codec"
)

// Defaults for the zero fields of Config. The protocol constants come from
// RFC 5460 (BULK_LQ_DATA_TIMEOUT, BULK_LQ_MAX_CONNS).
const (
	// DefaultListen is the TCP and UDP address of a DHCPv6 server (port 547,
	// RFC 8415 section 7.2; RFC 5460 and RFC 7653 section 3 keep it for TCP).
	DefaultListen = "[::]:547"

	// DefaultMaxConns caps the TCP connections of the whole server. RFC 5460
	// suggests BULK_LQ_MAX_CONNS (10) for a server that only does Bulk
	// Leasequery, where every connection may be a full dump. A carrier
	// server also holds long-lived Active Leasequery connections from many
	// requestors, and an idle gnet connection costs a few KiB, so the
	// server-wide cap is sized by descriptors instead and the RFC's 10 is
	// kept per requestor (DefaultMaxConnsPerRequestor). Start also lowers the
	// cap to fit RLIMIT_NOFILE.
	DefaultMaxConns = 4096

	// DefaultMaxConnsPerRequestor is BULK_LQ_MAX_CONNS of RFC 5460, applied
	// to each requestor address.
	DefaultMaxConnsPerRequestor = 10

	// DefaultMaxUnallowedConns caps the connections open at once from
	// addresses outside Allow, over all of them. Such a connection can do
	// nothing but learn that it is not allowed, so a few dozen serve
	// misconfigured requestors, and a flood of them from many addresses
	// costs at most this many descriptors.
	DefaultMaxUnallowedConns = 64

	// DefaultUnallowedTimeout is how long a connection from an address
	// outside Allow may stay open. A requestor that sends a query gets
	// NotAllowed and is closed at once; this bounds one that sends nothing.
	DefaultUnallowedTimeout = 5 * time.Second

	// DefaultMaxQueriesPerRequestor caps the bulk queries that run at once
	// for one requestor address, over all its connections (RFC 5460 asks
	// servers to offer such a cap; RFC 7653 section 9.4 repeats it).
	DefaultMaxQueriesPerRequestor = 4

	// DefaultMaxPipelinedQueries caps the queries read ahead on one
	// connection while an earlier one runs. Frames beyond it stay unread in
	// the connection's input buffer.
	DefaultMaxPipelinedQueries = 16

	// DefaultMaxMessageSize caps the msg-size of a received frame. A
	// LEASEQUERY carries two DUIDs of at most 130 octets, an OPTION_LQ_QUERY
	// and a few small options, so 4 KiB leaves ample room.
	DefaultMaxMessageSize = 4096

	// DefaultIdleTimeout closes a connection that has no query running and
	// has received no complete message for this long (Kea's
	// max-requester-idle-time has the same default).
	DefaultIdleTimeout = 300 * time.Second

	// DefaultDataTimeout is BULK_LQ_DATA_TIMEOUT of RFC 5460: a connection
	// whose pending output has not shrunk for this long is closed.
	DefaultDataTimeout = 300 * time.Second

	// DefaultChunkSize is the amount of encoded frames a bulk query hands to
	// the event loop at once, in octets.
	DefaultChunkSize = 64 << 10

	// DefaultNotSentLowWater is the TCP_NOTSENT_LOWAT set on every
	// connection, in octets: the kernel keeps at most about this much
	// unsent data, so a requestor that stops reading shows up as pending
	// output in the server instead of megabytes in socket buffers.
	DefaultNotSentLowWater = 64 << 10

	// DefaultWarnInterval is the minimum time between two warnings about
	// the same connection; repeats in between are counted and reported
	// with the next warning.
	DefaultWarnInterval = time.Minute

	// DefaultActiveIdleTimeout is ACTIVE_LQ_IDLE_TIMEOUT of RFC 7653
	// section 6.4.
	DefaultActiveIdleTimeout = 60 * time.Second

	// DefaultActiveSendTimeout is ACTIVE_LQ_SEND_TIMEOUT of RFC 7653
	// section 6.4.
	DefaultActiveSendTimeout = 120 * time.Second
)

// minChunkSize keeps a bulk query from handing the loop a chunk per
// message. A chunk may exceed ChunkSize by one message.
const minChunkSize = 4096

// Config configures a Server. The zero value works except for Allow, which
// lets nobody in until it is set. New copies it; later changes have no
// effect.
type Config struct {
	// Listen is the TCP address for Bulk Leasequery, host:port. Empty means
	// DefaultListen. Port 0 picks a free port (see Server.Addr).
	Listen string

	// ListenUDP is the UDP address for Leasequery (RFC 5007). Empty means
	// the host of Listen with the port the TCP listener got; "off" disables
	// UDP.
	ListenUDP string

	// Allow lists the requestor addresses that may query, as prefixes.
	// Empty means nobody: every query is answered with NotAllowed (RFC 5007
	// section 4.3.3 lets a server restrict requestors). IPv4-mapped
	// addresses are matched as IPv4.
	Allow []netip.Prefix

	// Served lists the prefixes the server is configured for. A query for
	// an address, or with a link-address, outside all of them gets
	// NotConfigured (RFC 5007 section 4.3.3). Empty means every address is
	// served.
	Served []netip.Prefix

	// DenyOptions lists option codes that are never sent, whatever a
	// requestor's ORO asks for (RFC 7653 sections 3 and 9.3 require this
	// to be configurable). Only optional data may be denied:
	// OPTION_CLT_TIME, OPTION_LQ_RELAY_DATA and OPTION_LQ_BASE_TIME.
	DenyOptions []codec.OptionCode

	// EventLoops is the number of gnet event loops. Zero means one per CPU.
	EventLoops int

	// MaxConns caps the TCP connections of the server; one over the cap is
	// closed at once. Zero means DefaultMaxConns.
	MaxConns int

	// MaxConnsPerRequestor caps the TCP connections from one requestor
	// address. Zero means DefaultMaxConnsPerRequestor.
	MaxConnsPerRequestor int

	// MaxUnallowedConns caps the TCP connections open at once from
	// addresses outside Allow, over all of them; one over the cap is closed
	// at once. They do not count against MaxConns or MaxConnsPerRequestor,
	// so they can never lock out allowed requestors. Zero means
	// DefaultMaxUnallowedConns.
	MaxUnallowedConns int

	// UnallowedTimeout closes a connection from an address outside Allow
	// this long after it opened, whatever it sends. Zero means
	// DefaultUnallowedTimeout.
	UnallowedTimeout time.Duration

	// MaxQueriesPerRequestor caps the bulk queries running at once for one
	// requestor address; further ones wait. Zero means
	// DefaultMaxQueriesPerRequestor.
	MaxQueriesPerRequestor int

	// MaxPipelinedQueries caps the queries queued on one connection behind
	// the running one. Further input stays unread; once a connection holds
	// more than MaxPipelinedQueries * (MaxMessageSize + 2) unread octets,
	// and at least 64 KiB, the queued queries get QueryTerminated, the
	// running one ends with it too, and the connection closes. Zero means
	// DefaultMaxPipelinedQueries.
	MaxPipelinedQueries int

	// MaxMessageSize is the largest msg-size accepted in a received frame,
	// in octets; a larger frame closes the connection. Zero means
	// DefaultMaxMessageSize.
	MaxMessageSize int

	// IdleTimeout closes a connection with no query running that received
	// nothing, or only part of a frame, for this long. Zero means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration

	// DataTimeout is BULK_LQ_DATA_TIMEOUT: a connection whose pending output
	// has not shrunk for this long is closed as a slow consumer, and its
	// query stopped. Zero means DefaultDataTimeout.
	DataTimeout time.Duration

	// ChunkSize is how many octets of frames a bulk query encodes before it
	// hands them to the event loop; a connection holds at most a few chunks
	// of pending output before its query waits. Zero means
	// DefaultChunkSize.
	ChunkSize int

	// NotSentLowWater is the TCP_NOTSENT_LOWAT of every connection, in
	// octets. Zero means DefaultNotSentLowWater; negative leaves the kernel
	// default.
	NotSentLowWater int

	// WarnInterval is the minimum time between warnings about one
	// connection. Zero means DefaultWarnInterval.
	WarnInterval time.Duration

	// Active enables Active Leasequery (RFC 7653): ACTIVELEASEQUERY
	// subscribes the connection to binding changes. Off by default, as
	// section 9.1 requires; without it ACTIVELEASEQUERY gets NotSupported
	// (section 9.2). It also needs a transport to run on: Insecure for
	// plaintext TCP.
	Active bool

	// Insecure serves queries on connections that do not start TLS, a
	// configuration step separate from Active and from TLS (RFC 7653
	// section 9.1). With TLS set and Insecure off, a connection whose first
	// message is not STARTTLS is closed; with both, both kinds are served.
	// Without TLS, Active needs Insecure and Insecure needs Active; plaintext
	// Bulk Leasequery (RFC 5460, which has no secure mode) is then served
	// either way.
	Insecure bool

	// TLS configures secure mode: STARTTLS and mutual TLS (RFC 7653
	// sections 8.2 and 9.1). The zero value disables it, and STARTTLS then
	// gets TLSConnectionRefused.
	TLS TLSConfig

	// ActiveIdleTimeout is ACTIVE_LQ_IDLE_TIMEOUT: an Active Leasequery
	// connection sent nothing for this long gets a LEASEQUERY-DATA without
	// binding data (RFC 7653 section 8.4). Zero means
	// DefaultActiveIdleTimeout; shorter values are logged at start-up,
	// since section 6.4 advises against them.
	ActiveIdleTimeout time.Duration

	// ActiveSendTimeout is ACTIVE_LQ_SEND_TIMEOUT: an Active Leasequery
	// connection whose output the kernel refuses for this long is closed
	// as a slow consumer (RFC 7653 section 9.3). Zero means
	// DefaultActiveSendTimeout.
	ActiveSendTimeout time.Duration

	// ActiveRingSize is the number of committed binding changes kept in
	// memory for Active Leasequery connections, a power of two. A
	// connection further behind resumes from the store. Zero means
	// fanout.DefaultCapacity.
	ActiveRingSize int
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.EventLoops == 0 {
		c.EventLoops = runtime.NumCPU()
	}
	setDefault(&c.MaxConns, DefaultMaxConns)
	setDefault(&c.MaxConnsPerRequestor, DefaultMaxConnsPerRequestor)
	setDefault(&c.MaxUnallowedConns, DefaultMaxUnallowedConns)
	setDefault(&c.UnallowedTimeout, DefaultUnallowedTimeout)
	setDefault(&c.MaxQueriesPerRequestor, DefaultMaxQueriesPerRequestor)
	setDefault(&c.MaxPipelinedQueries, DefaultMaxPipelinedQueries)
	setDefault(&c.MaxMessageSize, DefaultMaxMessageSize)
	setDefault(&c.ChunkSize, DefaultChunkSize)
	setDefault(&c.NotSentLowWater, DefaultNotSentLowWater)
	setDefault(&c.IdleTimeout, DefaultIdleTimeout)
	setDefault(&c.DataTimeout, DefaultDataTimeout)
	setDefault(&c.WarnInterval, DefaultWarnInterval)
	setDefault(&c.ActiveIdleTimeout, DefaultActiveIdleTimeout)
	setDefault(&c.ActiveSendTimeout, DefaultActiveSendTimeout)
	return c
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// Validate reports the first field that holds an unusable value. The error
// wraps ErrInvalidConfig or ErrActiveNotAvailable.
func (c *Config) Validate() error {
	if err := c.validateActive(); err != nil {
		return err
	}
	if err := c.TLS.validate(); err != nil {
		return err
	}

	counts := []struct {
		name  string
		value int
	}{
		{"EventLoops", c.EventLoops},
		{"MaxConns", c.MaxConns},
		{"MaxConnsPerRequestor", c.MaxConnsPerRequestor},
		{"MaxUnallowedConns", c.MaxUnallowedConns},
		{"MaxQueriesPerRequestor", c.MaxQueriesPerRequestor},
		{"MaxPipelinedQueries", c.MaxPipelinedQueries},
		{"MaxMessageSize", c.MaxMessageSize},
		{"ChunkSize", c.ChunkSize},
		{"ActiveRingSize", c.ActiveRingSize},
	}
	for _, f := range counts {
		if f.value < 0 {
			return fmt.Errorf("%w: %s is %d, want 0 (default) or more", ErrInvalidConfig, f.name, f.value)
		}
	}
	if c.MaxMessageSize > codec.MaxMessageLen {
		return fmt.Errorf("%w: MaxMessageSize is %d, want at most %d", ErrInvalidConfig, c.MaxMessageSize, codec.MaxMessageLen)
	}
	if c.MaxMessageSize != 0 && c.MaxMessageSize < codec.HeaderLen {
		return fmt.Errorf("%w: MaxMessageSize is %d, want at least %d", ErrInvalidConfig, c.MaxMessageSize, codec.HeaderLen)
	}
	if c.ChunkSize != 0 && c.ChunkSize < minChunkSize {
		return fmt.Errorf("%w: ChunkSize is %d, want at least %d", ErrInvalidConfig, c.ChunkSize, minChunkSize)
	}

	durations := []struct {
		name  string
		value time.Duration
	}{
		{"IdleTimeout", c.IdleTimeout},
		{"DataTimeout", c.DataTimeout},
		{"UnallowedTimeout", c.UnallowedTimeout},
		{"WarnInterval", c.WarnInterval},
		{"ActiveIdleTimeout", c.ActiveIdleTimeout},
		{"ActiveSendTimeout", c.ActiveSendTimeout},
	}
	for _, f := range durations {
		if f.value < 0 {
			return fmt.Errorf("%w: %s is %v, want 0 (default) or more", ErrInvalidConfig, f.name, f.value)
		}
	}

	for _, p := range append(append([]netip.Prefix(nil), c.Allow...), c.Served...) {
		if !p.IsValid() {
			return fmt.Errorf("%w: prefix %v in Allow or Served is invalid", ErrInvalidConfig, p)
		}
	}
	for _, p := range c.Served {
		if !p.Addr().Is6() || p.Addr().Is4In6() {
			return fmt.Errorf("%w: Served prefix %v is not IPv6", ErrInvalidConfig, p)
		}
	}
	for _, code := range c.DenyOptions {
		if !deniable(code) {
			return fmt.Errorf("%w: DenyOptions lists %v, which is not optional data; only %v, %v and %v may be denied",
				ErrInvalidConfig, code, codec.OptCLTTime, codec.OptLQRelayData, codec.OptLQBaseTime)
		}
	}
	return nil
}

// deniable reports whether code is optional data that DenyOptions may list.
func deniable(code codec.OptionCode) bool {
	switch code {
	case codec.OptCLTTime, codec.OptLQRelayData, codec.OptLQBaseTime:
		return true
	}
	return false
}
