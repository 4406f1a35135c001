package requestor

import (
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/alqd/alqd/codec"
)

// DefaultPort is the DHCPv6 server port, used for UDP Leasequery and for the
// TCP connections of Bulk and Active Leasequery (RFC 5460, RFC 7653 section 3).
const DefaultPort = 547

// Protocol parameters with the values the RFCs give them.
const (
	// DefaultLQTimeout is LQ_TIMEOUT of RFC 5007: the first UDP retransmission
	// timeout.
	DefaultLQTimeout = 1 * time.Second
	// DefaultLQMaxRT is LQ_MAX_RT of RFC 5007: the largest UDP retransmission
	// timeout.
	DefaultLQMaxRT = 10 * time.Second
	// DefaultLQMaxRC is LQ_MAX_RC of RFC 5007: how many times a LEASEQUERY is
	// sent over UDP in all.
	DefaultLQMaxRC = 5
	// DefaultBulkDataTimeout is BULK_LQ_DATA_TIMEOUT of RFC 5460: how long a
	// bulk requestor waits for the next message, or for a blocked write.
	DefaultBulkDataTimeout = 300 * time.Second
	// DefaultReceiveTimeout is ACTIVE_LQ_RCV_TIMEOUT of RFC 7653 section 6.4.
	DefaultReceiveTimeout = 120 * time.Second
	// DefaultRetryInterval is ACTIVE_LQ_IDLE_TIMEOUT of RFC 7653 section 6.4,
	// which section 8.1 also makes the shortest spacing between retries.
	DefaultRetryInterval = 60 * time.Second
	// DefaultDialTimeout bounds one TCP connection attempt. The RFCs give no
	// value.
	DefaultDialTimeout = 10 * time.Second
	// DefaultStartTLSTimeout is how long Dial waits for the REPLY to STARTTLS
	// before it decides the server will not answer. RFC 7653 gives no value.
	DefaultStartTLSTimeout = 30 * time.Second
)

// Config describes the server and the requestor's own identity and timers.
// The zero value of every field but Server selects the default given in its
// comment; Validate fills nothing in, the functions that take a Config apply
// the defaults to their own copy.
type Config struct {
	// Server is the server address as host:port or host; the port defaults
	// to DefaultPort. An IPv6 literal with a port needs brackets.
	Server string

	// ClientID is the requestor's DUID, sent in OPTION_CLIENTID. Nil makes
	// each Dial and QueryUDP call draw a random DUID-UUID (RFC 6355).
	ClientID []byte

	// TLS, when not nil, puts every TCP connection in secure mode (RFC 7653
	// section 8.2): STARTTLS first, then a TLS handshake that must verify the
	// server with TLS.RootCAs and TLS.ServerName (the host of Server when
	// empty). Set TLS.Certificates to the requestor's own certificate,
	// because a server in secure mode requires one. A zero MinVersion means
	// TLS 1.2 and nil CipherSuites the ECDHE AEAD suites of RFC 7525 for TLS
	// 1.2. Nil is insecure mode.
	TLS *tls.Config

	// DialTimeout bounds one TCP connection attempt. Default 10 s.
	DialTimeout time.Duration
	// StartTLSTimeout bounds the wait for the REPLY to STARTTLS. Default 30 s.
	StartTLSTimeout time.Duration
	// BulkDataTimeout is BULK_LQ_DATA_TIMEOUT: the longest a bulk query waits
	// for the next message, and the longest any query may take to be written.
	// Default 300 s.
	BulkDataTimeout time.Duration
	// ReceiveTimeout is ACTIVE_LQ_RCV_TIMEOUT: an active connection that
	// delivers nothing, not even a keepalive, for this long is closed.
	// Default 120 s. RFC 7653 section 6.4 advises against going below it.
	ReceiveTimeout time.Duration
	// RetryInterval is the shortest time between two connection attempts of
	// a Watcher (ACTIVE_LQ_IDLE_TIMEOUT). Default 60 s.
	RetryInterval time.Duration

	// LQTimeout, LQMaxRT and LQMaxRC are the UDP retransmission parameters
	// LQ_TIMEOUT (default 1 s), LQ_MAX_RT (default 10 s) and LQ_MAX_RC
	// (default 5 transmissions).
	LQTimeout time.Duration
	LQMaxRT   time.Duration
	LQMaxRC   int

	// MaxMessageSize is the largest TCP message accepted from the server, in
	// octets. Default codec.MaxMessageLen.
	MaxMessageSize int
}

// Validate reports a Config that cannot work: an empty or unparsable Server,
// a ClientID that is not a DUID, negative durations or counts.
func (c *Config) Validate() error {
	if _, err := c.serverAddr(); err != nil {
		return err
	}
	if c.ClientID != nil {
		if _, err := codec.ParseDUID(c.ClientID); err != nil {
			return fmt.Errorf("%w: requestor client-id %x: %w", ErrInvalidQuery, c.ClientID, err)
		}
	}
	for _, d := range []struct {
		name  string
		value time.Duration
	}{
		{"DialTimeout", c.DialTimeout},
		{"StartTLSTimeout", c.StartTLSTimeout},
		{"BulkDataTimeout", c.BulkDataTimeout},
		{"ReceiveTimeout", c.ReceiveTimeout},
		{"RetryInterval", c.RetryInterval},
		{"LQTimeout", c.LQTimeout},
		{"LQMaxRT", c.LQMaxRT},
	} {
		if d.value < 0 {
			return fmt.Errorf("%w: %s is negative (%v)", ErrInvalidQuery, d.name, d.value)
		}
	}
	if c.LQMaxRC < 0 {
		return fmt.Errorf("%w: LQMaxRC is negative (%d)", ErrInvalidQuery, c.LQMaxRC)
	}
	if c.MaxMessageSize < 0 || c.MaxMessageSize > codec.MaxMessageLen {
		return fmt.Errorf("%w: MaxMessageSize %d is outside 0 to %d", ErrInvalidQuery, c.MaxMessageSize, codec.MaxMessageLen)
	}
	return nil
}

// withDefaults returns a copy of c with every zero field set to its default
// and a ClientID drawn when there is none.
func (c Config) withDefaults() Config {
	setDuration(&c.DialTimeout, DefaultDialTimeout)
	setDuration(&c.StartTLSTimeout, DefaultStartTLSTimeout)
	setDuration(&c.BulkDataTimeout, DefaultBulkDataTimeout)
	setDuration(&c.ReceiveTimeout, DefaultReceiveTimeout)
	setDuration(&c.RetryInterval, DefaultRetryInterval)
	setDuration(&c.LQTimeout, DefaultLQTimeout)
	setDuration(&c.LQMaxRT, DefaultLQMaxRT)
	if c.LQMaxRC == 0 {
		c.LQMaxRC = DefaultLQMaxRC
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = codec.MaxMessageLen
	}
	if c.ClientID == nil {
		c.ClientID = RandomDUID()
	}
	return c
}

func setDuration(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

// serverAddr returns Server with the default port added when it has none.
func (c *Config) serverAddr() (string, error) {
	return ServerAddress(c.Server)
}

// ServerAddress returns s as host:port, adding DefaultPort when s has no
// port. It accepts "host", "host:port", "[v6]:port", "[v6]" and a bare IPv6
// literal.
func ServerAddress(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("%w: no server address given", ErrInvalidQuery)
	}
	if host, port, err := net.SplitHostPort(s); err == nil {
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return "", fmt.Errorf("%w: server %q: port %q is not a number from 1 to 65535", ErrInvalidQuery, s, port)
		}
		if host == "" {
			return "", fmt.Errorf("%w: server %q has no host", ErrInvalidQuery, s)
		}
		return s, nil
	}
	host := s
	if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return net.JoinHostPort(host, strconv.Itoa(DefaultPort)), nil
}

// RandomDUID returns a new DUID-UUID (RFC 6355) with a random version 4
// UUID, for a requestor that has no configured identity.
func RandomDUID() []byte {
	var u [16]byte
	_, _ = rand.Read(u[:]) // crypto/rand.Read never fails since Go 1.24
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	d := codec.NewDUIDUUID(u)
	b, err := d.AppendTo(nil)
	if err != nil {
		panic("requestor: DUID-UUID encoding failed: " + err.Error())
	}
	return b
}
