package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"flag"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
)

// commonFlags are the flags every command that talks to a server takes.
type commonFlags struct {
	server         string
	duid           string
	json           bool
	tls            bool
	tlsCert        string
	tlsKey         string
	tlsCA          string
	tlsServerName  string
	dialTimeout    time.Duration
	receiveTimeout time.Duration
	bulkTimeout    time.Duration
	retryInterval  time.Duration
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.server, "server", "", "server `host:port` (port 547 when omitted; IPv6 as [addr]:port)")
	fs.StringVar(&c.duid, "duid", "", "this requestor's DUID in `hex` (default: DUID-LL of the first Ethernet interface, else a random DUID-UUID)")
	fs.BoolVar(&c.json, "json", false, "print one JSON object per line per event (see docs/ALQ.md)")
}

// registerTCP adds the flags of the TCP commands; active adds those of
// watch and mirror.
func (c *commonFlags) registerTCP(fs *flag.FlagSet, active bool) {
	fs.BoolVar(&c.tls, "tls", false, "use STARTTLS and TLS (implied by the other --tls flags)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM `file` with this requestor's certificate, sent to the server")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM `file` with the private key of --tls-cert")
	fs.StringVar(&c.tlsCA, "tls-ca", "", "PEM `file` with the CA certificates that verify the server (default: the system roots)")
	fs.StringVar(&c.tlsServerName, "tls-server-name", "", "`name` the server certificate must carry (default: the host of --server)")
	fs.DurationVar(&c.dialTimeout, "connect-timeout", requestor.DefaultDialTimeout, "longest wait for a TCP connection")
	fs.DurationVar(&c.bulkTimeout, "bulk-timeout", requestor.DefaultBulkDataTimeout, "give up on a bulk answer silent this long (BULK_LQ_DATA_TIMEOUT)")
	if active {
		fs.DurationVar(&c.receiveTimeout, "receive-timeout", requestor.DefaultReceiveTimeout, "close an active connection silent this long (ACTIVE_LQ_RCV_TIMEOUT)")
		fs.DurationVar(&c.retryInterval, "retry-interval", requestor.DefaultRetryInterval, "shortest time between two connection attempts (ACTIVE_LQ_IDLE_TIMEOUT)")
	}
}

// config builds the requestor configuration.
func (c *commonFlags) config() (requestor.Config, error) {
	if c.server == "" {
		return requestor.Config{}, usagef("--server is required")
	}
	return c.configFor(c.server)
}

// configFor builds the requestor configuration for server, which may be
// empty when the caller fills it in later.
func (c *commonFlags) configFor(server string) (requestor.Config, error) {
	cfg := requestor.Config{
		Server:          server,
		DialTimeout:     c.dialTimeout,
		ReceiveTimeout:  c.receiveTimeout,
		BulkDataTimeout: c.bulkTimeout,
		RetryInterval:   c.retryInterval,
	}
	if server != "" {
		if _, err := requestor.ServerAddress(server); err != nil {
			return cfg, usagef("--server %q: %v", server, err)
		}
	}
	var err error
	if c.duid != "" {
		if cfg.ClientID, err = parseHex("--duid", c.duid); err != nil {
			return cfg, err
		}
		if _, err := codec.ParseDUID(cfg.ClientID); err != nil {
			return cfg, usagef("--duid %s is not a DUID: %v", c.duid, err)
		}
	} else {
		cfg.ClientID = defaultDUID()
	}
	if cfg.TLS, err = c.tlsConfig(); err != nil {
		return cfg, err
	}
	if server == "" {
		return cfg, nil
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usagef("%v", err)
	}
	return cfg, nil
}

// tlsConfig loads the TLS files, or returns nil in insecure mode.
func (c *commonFlags) tlsConfig() (*tls.Config, error) {
	if !c.tls && c.tlsCert == "" && c.tlsKey == "" && c.tlsCA == "" && c.tlsServerName == "" {
		return nil, nil
	}
	cfg := &tls.Config{ServerName: c.tlsServerName, MinVersion: tls.VersionTLS12}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return nil, usagef("--tls-cert and --tls-key go together")
	}
	if c.tlsCert != "" {
		pair, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			return nil, usagef("--tls-cert %s / --tls-key %s: %v", c.tlsCert, c.tlsKey, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	if c.tlsCA != "" {
		pem, err := os.ReadFile(c.tlsCA)
		if err != nil {
			return nil, usagef("--tls-ca: %v", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, usagef("--tls-ca %s contains no PEM certificate; give a file of PEM CERTIFICATE blocks", c.tlsCA)
		}
	}
	return cfg, nil
}

// queryFlags select the bindings of a query.
type queryFlags struct {
	by        string
	address   string
	clientID  string
	relayID   string
	remoteID  string
	link      string
	relayData bool
	startTime string
	endTime   string
}

func (q *queryFlags) register(fs *flag.FlagSet, times bool) {
	fs.StringVar(&q.by, "by", "", "query type: address, client-id, relay-id, link-address or remote-id (default: the one whose value flag is set)")
	fs.StringVar(&q.address, "address", "", "IPv6 `address` for --by address")
	fs.StringVar(&q.clientID, "client-id", "", "client DUID in `hex` for --by client-id")
	fs.StringVar(&q.relayID, "relay-id", "", "relay agent DUID in `hex` for --by relay-id")
	fs.StringVar(&q.remoteID, "remote-id", "", "OPTION_REMOTE_ID data in `hex` for --by remote-id: 4-octet enterprise number, then the remote-id")
	fs.StringVar(&q.link, "link", "", "link-`address`: the key of --by link-address, and a restriction for the other types")
	fs.BoolVar(&q.relayData, "relay-data", true, "ask for the relay data (link, relay-id, remote-id) of each binding")
	if times {
		fs.StringVar(&q.startTime, "start-time", "", "only bindings changed at or after this `time`: RFC 3339, or seconds since 2000-01-01 in the server's clock")
		fs.StringVar(&q.endTime, "end-time", "", "only bindings changed at or before this `time` (same forms as --start-time)")
	}
}

// set reports whether any query flag was given, so that watch and mirror
// can tell a filter from none.
func (q *queryFlags) set() bool {
	return q.by != "" || q.address != "" || q.clientID != "" || q.relayID != "" || q.remoteID != "" || q.link != ""
}

// queryTypes maps --by values to query types.
var queryTypes = map[string]codec.QueryType{
	"address":      codec.QueryByAddress,
	"client-id":    codec.QueryByClientID,
	"relay-id":     codec.QueryByRelayID,
	"link-address": codec.QueryByLinkAddress,
	"remote-id":    codec.QueryByRemoteID,
}

// queryTypeName returns the --by value that names t.
func queryTypeName(t codec.QueryType) string {
	for name, qt := range queryTypes {
		if qt == t {
			return name
		}
	}
	return t.String()
}

// query builds the query.
func (q *queryFlags) query() (requestor.Query, error) {
	var out requestor.Query
	by, err := q.queryType()
	if err != nil {
		return out, err
	}
	out.Type = by
	out.RelayData = q.relayData
	if q.link != "" {
		if out.Link, err = parseAddr("--link", q.link); err != nil {
			return out, err
		}
	}

	switch by {
	case codec.QueryByAddress:
		out.Address, err = parseAddr("--address", q.address)
	case codec.QueryByClientID:
		out.ClientID, err = parseHex("--client-id", q.clientID)
	case codec.QueryByRelayID:
		out.RelayID, err = parseHex("--relay-id", q.relayID)
	case codec.QueryByRemoteID:
		var raw []byte
		if raw, err = parseHex("--remote-id", q.remoteID); err == nil {
			if err = out.RemoteID.Decode(raw); err != nil {
				err = usagef("--remote-id %s: need a 4-octet enterprise number and at least one octet of remote-id", q.remoteID)
			}
		}
	case codec.QueryByLinkAddress:
		if q.link == "" {
			err = usagef("--by link-address needs --link")
		}
	}
	if err != nil {
		return out, err
	}

	if q.startTime != "" {
		if out.StartTime, err = parseTime("--start-time", q.startTime); err != nil {
			return out, err
		}
		out.HasStartTime = true
	}
	if q.endTime != "" {
		if out.EndTime, err = parseTime("--end-time", q.endTime); err != nil {
			return out, err
		}
		out.HasEndTime = true
	}
	if err := out.Validate(); err != nil {
		return out, usagef("%v", err)
	}
	return out, nil
}

// queryType returns the type --by names, or the one its value flag
// implies.
func (q *queryFlags) queryType() (codec.QueryType, error) {
	keys := map[string]string{"address": q.address, "client-id": q.clientID, "relay-id": q.relayID, "remote-id": q.remoteID}
	names := []string{"address", "client-id", "relay-id", "remote-id"}
	if q.by == "" {
		var given []string
		for _, name := range names {
			if keys[name] != "" {
				given = append(given, name)
			}
		}
		switch {
		case len(given) == 1:
			return queryTypes[given[0]], nil
		case len(given) == 0 && q.link != "":
			return codec.QueryByLinkAddress, nil
		case len(given) == 0:
			return 0, usagef("--by is required: address, client-id, relay-id, link-address or remote-id")
		}
		return 0, usagef("--%s and --%s select different query types; give one, or --by", given[0], given[1])
	}
	t, ok := queryTypes[q.by]
	if !ok {
		return 0, usagef("--by %q is not a query type: use address, client-id, relay-id, link-address or remote-id", q.by)
	}
	for _, name := range names {
		if keys[name] != "" && name != q.by {
			return 0, usagef("--%s does not go with --by %s", name, q.by)
		}
	}
	if q.by != "link-address" && keys[q.by] == "" {
		return 0, usagef("--by %s needs --%s", q.by, q.by)
	}
	return t, nil
}

// parseTime reads an RFC 3339 time, converted assuming the server's clock
// agrees with ours (RFC 7653 section 6.3.3), or a number of seconds since
// 2000-01-01 in the server's clock.
func parseTime(flagName, s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return 0, usagef("%s %q: want RFC 3339 (2026-01-01T00:00:00Z) or seconds since 2000-01-01", flagName, s)
	}
	if t.Before(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) {
		return 0, usagef("%s %q is before 2000-01-01, the start of DHCPv6 time", flagName, s)
	}
	return codec.DHCPTime(t), nil
}

func parseAddr(flagName, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() || a.Is4In6() {
		return netip.Addr{}, usagef("%s %q is not an IPv6 address", flagName, s)
	}
	return a, nil
}

// parseHex reads hex octets, with or without ':' or '-' between them.
func parseHex(flagName, s string) ([]byte, error) {
	clean := strings.NewReplacer(":", "", "-", "", " ", "").Replace(s)
	b, err := hex.DecodeString(clean)
	if err != nil || len(b) == 0 {
		return nil, usagef("%s %q is not hex octets (for example 00030001005e005301 or 00:03:00:01:00:5e:00:53:01)", flagName, s)
	}
	return b, nil
}

// defaultDUID returns a DUID-LL for the first interface with an Ethernet
// address, so that the requestor keeps its identity across runs, or a
// random DUID-UUID when there is none.
func defaultDUID() []byte {
	ifaces, _ := net.Interfaces()
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagLoopback != 0 || len(ifc.HardwareAddr) != 6 {
			continue
		}
		d := codec.NewDUIDLL(1, ifc.HardwareAddr)
		if b, err := d.AppendTo(nil); err == nil {
			return b
		}
	}
	return requestor.RandomDUID()
}

// linkQueries returns one QUERY_BY_LINK_ADDRESS per --bulk-link value.
func linkQueries(links []string, relayData bool) ([]requestor.Query, error) {
	var out []requestor.Query
	for _, s := range links {
		a, err := parseAddr("--bulk-link", s)
		if err != nil {
			return nil, err
		}
		out = append(out, requestor.Query{Type: codec.QueryByLinkAddress, Link: a, RelayData: relayData})
	}
	return out, nil
}

// stringList is a repeatable flag that also splits on commas.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l = append(*l, part)
		}
	}
	return nil
}

// checkArgs rejects positional arguments, which no command takes.
func checkArgs(fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q: every option is a flag", fs.Arg(0))
	}
	return nil
}
