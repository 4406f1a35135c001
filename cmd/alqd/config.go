package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/server"
	"github.com/alqd/alqd/store"
)

// options is everything alqd is configured with: the server's Config plus
// what only the process needs.
type options struct {
	server server.Config

	configFile      string
	dataDir         string
	metricsAddr     string
	backupEndpoint  bool
	ingestAddr      string
	keaLeaseFile    string
	keaSubnetLinks  map[uint32]netip.Addr
	retention       time.Duration
	trimInterval    time.Duration
	blockCacheSize  int64
	shutdownTimeout time.Duration
	logLevel        slog.Level
	logFormat       string
}

// parseOptions reads the command line and, when --config names one, a JSON
// file whose keys are the flag names; a flag given on the command line
// overrides the file.
// tlsFieldsAsFlags turns the server.Config field names that the server's
// validation errors use into the flags that set them.
var tlsFieldsAsFlags = strings.NewReplacer(
	"TLS.CertFile", "--tls-cert",
	"TLS.KeyFile", "--tls-key",
	"TLS.ClientCAFile", "--tls-client-ca",
	"TLS.Allow", "--tls-allow",
	"TLS.HandshakeTimeout", "--tls-handshake-timeout",
)

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	o := &options{logFormat: "text", shutdownTimeout: 30 * time.Second}
	fs := flag.NewFlagSet("alqd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.define(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage:
  alqd --data-dir DIR [flags]             serve leasequeries from the store in DIR
  alqd verify --data-dir DIR              check a store that no alqd has open
  alqd backup --data-dir DIR --out FILE   back up a store that no alqd has open
  alqd restore --data-dir DIR --in FILE   create a store from a backup
Run "alqd COMMAND -h" for the flags of a command. Flags of the server:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q; every setting is a flag", fs.Arg(0))
	}
	if o.configFile != "" {
		if err := applyConfigFile(fs, o.configFile); err != nil {
			return nil, err
		}
	}
	if o.dataDir == "" {
		return nil, errors.New("--data-dir is required: the directory of the binding store")
	}
	if o.backupEndpoint && o.metricsAddr == "" {
		return nil, errors.New("--backup-endpoint needs --metrics: the backup is served on the metrics listener")
	}
	if o.trimInterval < 0 {
		return nil, fmt.Errorf("--trim-interval %v is negative; give how often to trim, such as 10m", o.trimInterval)
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		return nil, fmt.Errorf("--log-format %q is invalid; use json or text", o.logFormat)
	}
	// The two transport rules of RFC 7653 section 9.1, in flag names;
	// server.Config.Validate checks the same with field names.
	tls := o.server.TLS.Enabled()
	if o.server.Active && !o.server.Insecure && !tls {
		return nil, errors.New("--active needs a transport: give --tls-cert, --tls-key and --tls-client-ca for STARTTLS, or add --insecure to serve Active Leasequery over plaintext TCP")
	}
	if o.server.Insecure && !o.server.Active && !tls {
		return nil, errors.New("--insecure allows plaintext next to --active or TLS and needs one of them")
	}
	if err := o.server.Validate(); err != nil {
		return nil, errors.New(tlsFieldsAsFlags.Replace(err.Error()))
	}
	return o, nil
}

func (o *options) define(fs *flag.FlagSet) {
	c := &o.server
	fs.StringVar(&o.configFile, "config", "", "JSON `file` whose keys are flag names (without --); command-line flags override it")
	fs.StringVar(&c.Listen, "listen", server.DefaultListen, "TCP (Bulk Leasequery) and UDP (Leasequery) `address`, host:port")
	fs.StringVar(&o.dataDir, "data-dir", "", "`directory` of the binding store (required)")
	fs.Var(prefixList{&c.Allow}, "allow", "requestor `prefixes` allowed to query, CIDR, repeatable or comma-separated; none means nobody")
	fs.Var(prefixList{&c.Served}, "served", "IPv6 `prefixes` this server is configured for, CIDR, repeatable or comma-separated; queries outside get NotConfigured; none means all")
	fs.StringVar(&o.metricsAddr, "metrics", "", "HTTP `address` for Prometheus /metrics, the /healthz and /readyz checks and /debug/pprof; empty disables it")
	fs.BoolVar(&o.backupEndpoint, "backup-endpoint", false, "serve GET /backup on the --metrics listener: a backup of the running store, as alqd backup writes it. The backup contains client DUIDs, relay-ids and remote-ids, so the --metrics address must then be reachable by operators only")
	fs.IntVar(&c.EventLoops, "event-loops", 0, "number of gnet event loops; 0 means one per CPU")
	fs.IntVar(&c.MaxConns, "max-conns", server.DefaultMaxConns, "maximum TCP `connections` in total; also lowered to fit the open file limit")
	fs.IntVar(&c.MaxConnsPerRequestor, "max-conns-per-requestor", server.DefaultMaxConnsPerRequestor, "maximum TCP `connections` from one requestor address (BULK_LQ_MAX_CONNS)")
	fs.IntVar(&c.MaxUnallowedConns, "max-unallowed-conns", server.DefaultMaxUnallowedConns, "maximum TCP `connections` open at once from addresses outside --allow, over all of them; they do not count against --max-conns")
	fs.DurationVar(&c.UnallowedTimeout, "unallowed-timeout", server.DefaultUnallowedTimeout, "close a connection from an address outside --allow this long after it opened (`duration`); one that sends a query gets NotAllowed and is closed at once")
	fs.IntVar(&c.MaxQueriesPerRequestor, "max-queries-per-requestor", server.DefaultMaxQueriesPerRequestor, "maximum bulk `queries` running at once for one requestor address")
	fs.IntVar(&c.MaxPipelinedQueries, "max-pipelined-queries", server.DefaultMaxPipelinedQueries, "maximum `queries` read ahead on one connection; a requestor that leaves more than this many times (max-message-size + 2) octets unread, and at least 64 KiB, gets QueryTerminated for the queries already read and is disconnected")
	fs.IntVar(&c.MaxMessageSize, "max-message-size", server.DefaultMaxMessageSize, "largest received message in `octets`; a larger frame closes the connection")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", server.DefaultIdleTimeout, "close a connection that sends no complete message for this `duration` while no query runs")
	fs.DurationVar(&c.DataTimeout, "data-timeout", server.DefaultDataTimeout, "BULK_LQ_DATA_TIMEOUT: close a connection whose pending output does not shrink for this `duration`")
	fs.IntVar(&c.ChunkSize, "chunk-size", server.DefaultChunkSize, "`octets` of frames a bulk query hands to the event loop at once")
	fs.IntVar(&c.NotSentLowWater, "notsent-lowat", server.DefaultNotSentLowWater, "TCP_NOTSENT_LOWAT of every connection in `octets`; negative keeps the kernel default")
	fs.BoolVar(&c.Active, "active", false, "enable Active Leasequery (RFC 7653); also needs the --tls files, --insecure for plaintext TCP, or both")
	fs.BoolVar(&c.Insecure, "insecure", false, "serve queries without TLS, a step separate from --active and the --tls files (RFC 7653 section 9.1); with TLS and without it, a connection must start with STARTTLS")
	fs.StringVar(&c.TLS.CertFile, "tls-cert", "", "PEM `file` with the server certificate (and intermediates) for STARTTLS; with --tls-key and --tls-client-ca it enables secure mode; reread on SIGHUP")
	fs.StringVar(&c.TLS.KeyFile, "tls-key", "", "PEM `file` with the private key of --tls-cert; reread on SIGHUP")
	fs.StringVar(&c.TLS.ClientCAFile, "tls-client-ca", "", "PEM `file` with the CA certificates that requestor certificates must chain to; reread on SIGHUP")
	fs.Var(certPatternList{&c.TLS.Allow}, "tls-allow", "requestor `certificates` allowed in secure mode: cn:NAME, dns:NAME, ip:ADDRESS, uri:URI or sha256:SPKI-HEX, repeatable or comma-separated; none means every certificate --tls-client-ca verifies")
	fs.DurationVar(&c.TLS.HandshakeTimeout, "tls-handshake-timeout", server.DefaultHandshakeTimeout, "close a connection whose STARTTLS reply and TLS handshake take longer than this `duration`")
	fs.DurationVar(&c.ActiveIdleTimeout, "active-idle-timeout", server.DefaultActiveIdleTimeout, "ACTIVE_LQ_IDLE_TIMEOUT: send a keepalive LEASEQUERY-DATA to an Active Leasequery connection idle for this `duration`")
	fs.DurationVar(&c.ActiveSendTimeout, "active-send-timeout", server.DefaultActiveSendTimeout, "ACTIVE_LQ_SEND_TIMEOUT: close an Active Leasequery connection blocked for this `duration`")
	fs.IntVar(&c.ActiveRingSize, "active-ring-size", 0, "binding `changes` kept in memory for Active Leasequery connections, a power of two; 0 means 65536")
	fs.Var(optionList{&c.DenyOptions}, "deny-option", "option `codes` never sent whatever the ORO asks (46, 47, 100), repeatable or comma-separated")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "log `level`: debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "log `format`: json or text")
	fs.StringVar(&o.ingestAddr, "ingest-listen", "", "HTTP `address` of the binding ingest API (POST /v1/bindings); empty disables it")
	fs.StringVar(&o.keaLeaseFile, "kea-lease-file", "", "Kea memfile lease `file` to follow; empty disables the follower")
	fs.Var(subnetLinkMap{&o.keaSubnetLinks}, "kea-subnet-link", "link-address given to direct (not relayed) clients of a Kea subnet, as `ID=ADDRESS` with the Kea subnet-id; repeatable or comma-separated")
	fs.DurationVar(&o.retention, "retention", 0, "how long released and expired bindings stay in the history (`duration`); 0 means the store default, 24h")
	fs.DurationVar(&o.trimInterval, "trim-interval", store.DefaultTrimInterval, "how often the history is trimmed of bindings older than --retention (`duration`); a requestor whose start time falls below the trimmed part gets DataMissing")
	fs.Int64Var(&o.blockCacheSize, "block-cache-size", 0, "store block cache in `octets`; 0 means the store default, 64 MiB")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long a shutdown waits for running queries to end (`duration`)")
}

// applyConfigFile sets every flag the file names that the command line did
// not set.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading config file: %w", err)
	}
	var values map[string]any
	if err := json.Unmarshal(data, &values); err != nil {
		return fmt.Errorf("config file %s is not a JSON object: %w", path, err)
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })

	for name, v := range values {
		if name == "config" {
			return fmt.Errorf("config file %s: key \"config\" is not allowed in a config file", path)
		}
		if fs.Lookup(name) == nil {
			return fmt.Errorf("config file %s: unknown key %q; keys are flag names such as \"listen\"", path, name)
		}
		if onCommandLine[name] {
			continue
		}
		for _, item := range configItems(v) {
			if err := fs.Set(name, jsonScalar(item)); err != nil {
				return fmt.Errorf("config file %s: key %q: %w", path, name, err)
			}
		}
	}
	return nil
}

// configItems returns the flag values of one config file key: each element
// of an array, each member of an object as "name=value" in name order, or
// the value itself.
func configItems(v any) []any {
	switch x := v.(type) {
	case []any:
		return x
	case map[string]any:
		names := make([]string, 0, len(x))
		for name := range x {
			names = append(names, name)
		}
		slices.Sort(names)
		items := make([]any, len(names))
		for i, name := range names {
			items[i] = name + "=" + jsonScalar(x[name])
		}
		return items
	}
	return []any{v}
}

// jsonScalar formats a decoded JSON value the way it would be typed on the
// command line.
func jsonScalar(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(v)
}

// prefixList is a repeatable, comma-separated list of CIDR prefixes. A bare
// address means its host prefix.
type prefixList struct{ list *[]netip.Prefix }

func (p prefixList) String() string {
	if p.list == nil {
		return ""
	}
	parts := make([]string, len(*p.list))
	for i, x := range *p.list {
		parts[i] = x.String()
	}
	return strings.Join(parts, ",")
}

func (p prefixList) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		pfx, err := netip.ParsePrefix(part)
		if err != nil {
			addr, aerr := netip.ParseAddr(part)
			if aerr != nil {
				return fmt.Errorf("%q is not a CIDR prefix such as 2001:db8::/32", part)
			}
			pfx = netip.PrefixFrom(addr, addr.BitLen())
		}
		*p.list = append(*p.list, pfx.Masked())
	}
	return nil
}

// subnetLinkMap is a repeatable, comma-separated list of ID=ADDRESS pairs
// mapping Kea subnet-ids to link-addresses.
type subnetLinkMap struct{ m *map[uint32]netip.Addr }

func (l subnetLinkMap) String() string {
	if l.m == nil {
		return ""
	}
	ids := make([]uint32, 0, len(*l.m))
	for id := range *l.m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.FormatUint(uint64(id), 10) + "=" + (*l.m)[id].String()
	}
	return strings.Join(parts, ",")
}

func (l subnetLinkMap) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		idText, addrText, ok := strings.Cut(part, "=")
		if !ok {
			return fmt.Errorf("%q is not ID=ADDRESS, such as 1=2001:db8:1::1", part)
		}
		id, err := strconv.ParseUint(strings.TrimSpace(idText), 10, 32)
		if err != nil {
			return fmt.Errorf("subnet-id %q in %q is not a number from 0 to 4294967295", idText, part)
		}
		addr, err := netip.ParseAddr(strings.TrimSpace(addrText))
		if err != nil || !addr.Is6() || addr.Is4In6() || addr.Zone() != "" || addr.IsUnspecified() || addr.IsMulticast() {
			return fmt.Errorf("link-address %q in %q is not a unicast IPv6 address without zone", addrText, part)
		}
		if *l.m == nil {
			*l.m = make(map[uint32]netip.Addr)
		}
		if prev, dup := (*l.m)[uint32(id)]; dup && prev != addr {
			return fmt.Errorf("subnet-id %d has two link-addresses, %s and %s", id, prev, addr)
		}
		(*l.m)[uint32(id)] = addr
	}
	return nil
}

// optionList is a repeatable, comma-separated list of option codes.
type optionList struct{ list *[]codec.OptionCode }

func (o optionList) String() string {
	if o.list == nil {
		return ""
	}
	parts := make([]string, len(*o.list))
	for i, c := range *o.list {
		parts[i] = strconv.Itoa(int(c))
	}
	return strings.Join(parts, ",")
}

func (o optionList) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		n, err := strconv.ParseUint(part, 10, 16)
		if err != nil {
			return fmt.Errorf("%q is not an option code (0 to 65535)", part)
		}
		*o.list = append(*o.list, codec.OptionCode(n))
	}
	return nil
}
