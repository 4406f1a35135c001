package loadgen

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/store"
)

// ChangeKind is the client event behind a binding change.
type ChangeKind uint8

const (
	// ChangeNew: a client without bindings gets them (Request and Reply).
	ChangeNew ChangeKind = iota
	// ChangeRenew: a client extends its bindings (Renew or Rebind); the CLTT
	// moves to the time of the change.
	ChangeRenew
	// ChangeRelease: a client gives its bindings back (Release). The
	// binding keeps its last CLTT, as Kea records it.
	ChangeRelease
	// ChangeExpire: the bindings of a client that stopped renewing run out
	// and the server reclaims them. The binding keeps its last CLTT.
	ChangeExpire

	// NumChangeKinds is the number of change kinds, for arrays indexed by
	// ChangeKind.
	NumChangeKinds
)

var changeKindNames = [NumChangeKinds]string{"new", "renew", "release", "expire"}

// String returns the lower-case name of k, such as "renew".
func (k ChangeKind) String() string {
	if k < NumChangeKinds {
		return changeKindNames[k]
	}
	return fmt.Sprintf("ChangeKind(%d)", uint8(k))
}

// IAIDs of the identity associations of every generated client.
const (
	iaidNA = 1
	iaidPD = 2
)

// Defaults of ChurnConfig.
const (
	DefaultClients           = 10000
	DefaultLinks             = 64
	DefaultRelays            = 16
	DefaultPDFraction        = 0.5
	DefaultRenewWeight       = 8
	DefaultReleaseWeight     = 1
	DefaultExpireWeight      = 1
	DefaultPreferredLifetime = 1800
	DefaultValidLifetime     = 3600
	DefaultPrefixLength      = 56
)

// ChurnConfig describes the simulated DHCPv6 server: its clients, links and
// relays, and the mix of client events. The zero value works and selects
// every default.
type ChurnConfig struct {
	// Seed selects the sequence of changes: the same Seed and settings give
	// the same changes in the same order, whatever the batch sizes.
	Seed uint64

	// Clients is the client population, 1 to MaxClients. Default 10,000.
	Clients int

	// Links is the number of links the clients are spread over, 1 to
	// MaxLinks; client i is on link i mod Links. Default 64.
	Links int

	// Relays is the number of relay agents, 1 to Links; relay r serves the
	// links j with j mod Relays = r and adds OPTION_INTERFACE_ID,
	// OPTION_REMOTE_ID (one per client) and OPTION_RELAY_ID (RelayID(r)) to
	// each Relay-forward. Default 16. Ignored when Direct is set.
	Relays int

	// Direct makes every client talk to the server without a relay: the
	// bindings carry only a link-address.
	Direct bool

	// PDFraction is the fraction of clients, 0 to 1, that hold an IA_PD
	// prefix besides their IA_NA address; each of their events changes both
	// bindings. Zero means 0.5; a negative value gives no client a prefix.
	PDFraction float64

	// RenewWeight, ReleaseWeight and ExpireWeight set the odds of the event
	// of a client that holds bindings. A client without bindings always
	// gets new ones. All zero means 8, 1 and 1: with clients picked
	// uniformly, about 80% of them then hold bindings.
	RenewWeight   int
	ReleaseWeight int
	ExpireWeight  int

	// PreferredLifetime and ValidLifetime are the lifetimes granted, in
	// seconds. Zero means 1800 and 3600.
	PreferredLifetime uint32
	ValidLifetime     uint32

	// PrefixLength is the length of delegated prefixes, 36 to 64. Default
	// 56, which leaves room for 2^23 clients with a prefix.
	PrefixLength int

	// Stamp selects where the send time of each change is written.
	// Default StampDUID.
	Stamp StampMode
}

// withDefaults returns c with its zero fields set to their defaults.
func (c ChurnConfig) withDefaults() ChurnConfig {
	setDefault(&c.Clients, DefaultClients)
	setDefault(&c.Links, DefaultLinks)
	setDefault(&c.Relays, DefaultRelays)
	setDefault(&c.PrefixLength, DefaultPrefixLength)
	if c.PDFraction == 0 {
		c.PDFraction = DefaultPDFraction
	}
	if c.RenewWeight == 0 && c.ReleaseWeight == 0 && c.ExpireWeight == 0 {
		c.RenewWeight, c.ReleaseWeight, c.ExpireWeight = DefaultRenewWeight, DefaultReleaseWeight, DefaultExpireWeight
	}
	if c.PreferredLifetime == 0 {
		c.PreferredLifetime = DefaultPreferredLifetime
	}
	if c.ValidLifetime == 0 {
		c.ValidLifetime = DefaultValidLifetime
	}
	return c
}

func setDefault(v *int, def int) {
	if *v == 0 {
		*v = def
	}
}

// Validate reports the first setting that can not work, after applying the
// defaults to a copy.
func (c *ChurnConfig) Validate() error {
	d := c.withDefaults()
	switch {
	case d.Clients < 1 || d.Clients > MaxClients:
		return fmt.Errorf("%w: clients %d is outside 1 to %d", ErrInvalidConfig, d.Clients, MaxClients)
	case d.Links < 1 || d.Links > MaxLinks:
		return fmt.Errorf("%w: links %d is outside 1 to %d", ErrInvalidConfig, d.Links, MaxLinks)
	case !d.Direct && (d.Relays < 1 || d.Relays > d.Links):
		return fmt.Errorf("%w: relays %d is outside 1 to the number of links (%d)", ErrInvalidConfig, d.Relays, d.Links)
	case math.IsNaN(d.PDFraction) || d.PDFraction > 1:
		return fmt.Errorf("%w: PD fraction %v is above 1", ErrInvalidConfig, d.PDFraction)
	case d.RenewWeight < 0 || d.ReleaseWeight < 0 || d.ExpireWeight < 0:
		return fmt.Errorf("%w: event weights %d, %d, %d: none may be negative", ErrInvalidConfig, d.RenewWeight, d.ReleaseWeight, d.ExpireWeight)
	case d.PreferredLifetime > d.ValidLifetime:
		// RFC 8415 section 21.6: a client discards an address whose preferred
		// lifetime exceeds its valid lifetime.
		return fmt.Errorf("%w: preferred lifetime %d exceeds valid lifetime %d", ErrInvalidConfig, d.PreferredLifetime, d.ValidLifetime)
	case d.PrefixLength < 36 || d.PrefixLength > 64:
		return fmt.Errorf("%w: prefix length %d is outside 36 to 64", ErrInvalidConfig, d.PrefixLength)
	case d.Stamp > StampNone:
		return fmt.Errorf("%w: unknown stamp mode %d", ErrInvalidConfig, d.Stamp)
	}
	if d.PDFraction > 0 && d.PrefixLength-pdPoolBits < 32 && uint64(d.Clients) > 1<<(d.PrefixLength-pdPoolBits) {
		return fmt.Errorf("%w: %d clients do not fit /%d prefixes in 2001:db8:8000::/%d (at most %d); use a longer prefix length or fewer clients",
			ErrInvalidConfig, d.Clients, d.PrefixLength, pdPoolBits, uint64(1)<<(d.PrefixLength-pdPoolBits))
	}
	return nil
}

// Change is one binding change and the client event behind it.
type Change struct {
	Kind     ChangeKind
	Client   uint32    // client number, 0 to Clients-1
	SubnetID uint32    // Kea subnet-id of the client's link
	Stamp    StampMode // field of Binding that holds the send time; StampNone when none does

	// PreferredLifetime and ValidLifetime are the lifetimes granted at the
	// CLTT, in seconds, also for ended bindings, whose Binding reports 0:
	// Kea keeps them on a reclaimed lease.
	PreferredLifetime uint32
	ValidLifetime     uint32

	Binding store.Binding
}

// SetStamp writes t as the send time of the change into the field its Stamp
// names, in place. Call it before the binding is handed to anything that
// keeps its byte slices.
func (ch *Change) SetStamp(t time.Time) {
	switch ch.Stamp {
	case StampDUID:
		binary.BigEndian.PutUint64(ch.Binding.ClientID[duidStampAt:], stampValue(t))
	case StampRelay:
		binary.BigEndian.PutUint64(ch.Binding.RelayMessage[relayStampAt:], stampValue(t))
	}
}

// arenaChunk is the size of the blocks that the byte slices of generated
// bindings are carved from.
const arenaChunk = 64 << 10

// Churn generates binding changes: a population of clients, each on one
// link behind one relay, each with an IA_NA address and maybe an IA_PD
// prefix, doing one event after another. Each event picks a client
// uniformly at random. A client without bindings gets new ones. A client
// with bindings renews, releases them or lets them expire, with the
// configured odds. An event of a client with a prefix gives two changes,
// IA_NA first.
//
// The byte slices of a generated binding are carved from blocks the Churn
// never writes again (except through Change.SetStamp by the caller), so
// the bindings may be handed to store.Apply or kept. A Churn is not safe
// for concurrent use.
type Churn struct {
	cfg ChurnConfig
	rng *rand.Rand

	active []bool
	cltt   []uint32 // Unix seconds of each client's last new or renew event

	pdThreshold uint64 // a client has a prefix when the top 32 bits of its hash are below this
	weightSum   int

	relayIDs     [][]byte // by relay
	interfaceIDs [][]byte // by link

	// queue holds the changes of the last event; queue[head:queued] are
	// not yet returned.
	queue  [2]Change
	head   int
	queued int

	arena []byte
}

// NewChurn returns a Churn for cfg, with every client yet without bindings.
func NewChurn(cfg ChurnConfig) (*Churn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &Churn{
		cfg:       cfg,
		rng:       rand.New(rand.NewPCG(cfg.Seed, 0x6c6f616467656e)),
		active:    make([]bool, cfg.Clients),
		cltt:      make([]uint32, cfg.Clients),
		weightSum: cfg.RenewWeight + cfg.ReleaseWeight + cfg.ExpireWeight,
	}
	if cfg.PDFraction > 0 {
		c.pdThreshold = uint64(cfg.PDFraction * (1 << 32))
	}
	if !cfg.Direct {
		c.relayIDs = make([][]byte, cfg.Relays)
		for r := range c.relayIDs {
			c.relayIDs[r] = RelayID(r)
		}
		c.interfaceIDs = make([][]byte, cfg.Links)
		for j := range c.interfaceIDs {
			c.interfaceIDs[j] = interfaceID(j)
		}
	}
	return c, nil
}

// Config returns the configuration of c with the defaults filled in.
func (c *Churn) Config() ChurnConfig { return c.cfg }

// HasPrefix reports whether client i holds an IA_PD prefix besides its
// IA_NA address.
func (c *Churn) HasPrefix(i uint32) bool {
	return c.pdThreshold > 0 && mix64(c.cfg.Seed^uint64(i)*0x9e3779b97f4a7c15)>>32 < c.pdThreshold
}

// NextChanges appends the next n changes to dst and returns the extended
// slice. now is the time of the changes: new and renewed bindings get it as
// their CLTT, cut to whole seconds as Kea records it, and every stamped
// change gets it as its send time.
//
// hot path: allocates only a new arena block every few hundred changes
// and when dst grows.
func (c *Churn) NextChanges(dst []Change, n int, now time.Time) []Change {
	for range n {
		dst = append(dst, *c.next(now))
	}
	return dst
}

// Next appends the bindings of the next n changes to dst and returns the
// extended slice; see NextChanges.
func (c *Churn) Next(dst []store.Binding, n int, now time.Time) []store.Binding {
	for range n {
		dst = append(dst, c.next(now).Binding)
	}
	return dst
}

// next returns the next change, generating an event when the changes of
// the previous one are used up. The result is valid until the next call.
func (c *Churn) next(now time.Time) *Change {
	if c.head == c.queued {
		c.event(now)
	}
	ch := &c.queue[c.head]
	c.head++
	return ch
}

// event picks a client and an event and queues its changes.
func (c *Churn) event(now time.Time) {
	i := uint32(c.rng.IntN(c.cfg.Clients))
	kind := ChangeNew
	if c.active[i] {
		kind = c.pickEnd()
	}
	switch kind {
	case ChangeNew, ChangeRenew:
		c.active[i] = true
		c.cltt[i] = uint32(now.Unix())
	default:
		c.active[i] = false
	}

	stamp := stampValue(now)
	c.head, c.queued = 0, 1
	c.build(&c.queue[0], kind, i, store.TypeNA, stamp)
	if c.HasPrefix(i) {
		c.build(&c.queue[1], kind, i, store.TypePD, stamp)
		c.queued = 2
	}
}

// pickEnd picks the event of a client that holds bindings.
func (c *Churn) pickEnd() ChangeKind {
	if c.weightSum == 0 {
		return ChangeRenew
	}
	r := c.rng.IntN(c.weightSum)
	switch {
	case r < c.cfg.RenewWeight:
		return ChangeRenew
	case r < c.cfg.RenewWeight+c.cfg.ReleaseWeight:
		return ChangeRelease
	default:
		return ChangeExpire
	}
}

// build fills ch with the binding of type typ of client i after an event
// of the given kind.
func (c *Churn) build(ch *Change, kind ChangeKind, i uint32, typ store.BindingType, stamp uint64) {
	j := int(i % uint32(c.cfg.Links))
	*ch = Change{
		Kind:              kind,
		Client:            i,
		SubnetID:          KeaSubnetID(j),
		Stamp:             c.cfg.Stamp,
		PreferredLifetime: c.cfg.PreferredLifetime,
		ValidLifetime:     c.cfg.ValidLifetime,
	}
	b := &ch.Binding
	b.Type = typ
	if typ == store.TypePD {
		b.Prefix = pdPrefix(i, c.cfg.PrefixLength)
		b.IAID = iaidPD
	} else {
		b.Prefix = netip.PrefixFrom(naAddress(i, j), 128)
		b.IAID = iaidNA
	}
	b.CLTT = time.Unix(int64(c.cltt[i]), 0).UTC()
	switch kind {
	case ChangeNew, ChangeRenew:
		b.State = store.StateActive
		b.PreferredLifetime, b.ValidLifetime = c.cfg.PreferredLifetime, c.cfg.ValidLifetime
	case ChangeRelease:
		b.State = store.StateReleased
	case ChangeExpire:
		b.State = store.StateExpired
	}
	b.LinkAddress = LinkAddress(j)

	duidStamp := uint64(0)
	if c.cfg.Stamp == StampDUID {
		duidStamp = stamp
	}
	start := c.reserve(clientDUIDLen)
	c.arena = appendClientDUID(c.arena, i, duidStamp)
	b.ClientID = c.carved(start)
	if c.cfg.Direct {
		if ch.Stamp == StampRelay {
			ch.Stamp = StampNone
		}
		return
	}

	r := j % c.cfg.Relays
	b.RelayID = c.relayIDs[r]
	b.InterfaceID = c.interfaceIDs[j]
	start = c.reserve(32)
	c.arena = appendRemoteID(c.arena, i)
	b.RemoteID = c.carved(start)
	b.RelayPeer = peerAddress(i)

	// The Relay-forward as the relay sent it, without the client's message
	// (RFC 5007 section 4.1.2.4 cuts OPTION_RELAY_MSG at the innermost
	// level). Options are in code order, as Kea stores them.
	start = c.reserve(relayMessageLen(b))
	c.arena = append(c.arena, byte(codec.MsgRelayForw), 0)
	link, peer := b.LinkAddress.As16(), b.RelayPeer.As16()
	c.arena = append(c.arena, link[:]...)
	c.arena = append(c.arena, peer[:]...)
	if c.cfg.Stamp == StampRelay {
		c.arena = appendVendorStamp(c.arena, stamp)
	}
	c.arena = appendTLV(c.arena, codec.OptInterfaceID, b.InterfaceID)
	c.arena = appendTLV(c.arena, codec.OptRemoteID, b.RemoteID)
	c.arena = appendTLV(c.arena, codec.OptRelayID, b.RelayID)
	b.RelayMessage = c.carved(start)
}

func relayMessageLen(b *store.Binding) int {
	return codec.RelayHeaderLen + vendorStampLen + 3*codec.OptionHeaderLen + len(b.InterfaceID) + len(b.RemoteID) + len(b.RelayID)
}

func appendTLV(b []byte, code codec.OptionCode, data []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(code))
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

// reserve makes room for n more octets in the arena and returns the offset
// they start at. A full block is dropped, never reused, because bindings
// handed out before point into it.
func (c *Churn) reserve(n int) int {
	if cap(c.arena)-len(c.arena) < n {
		c.arena = make([]byte, 0, max(n, arenaChunk))
	}
	return len(c.arena)
}

// carved returns the arena octets appended since start, capped so that an
// append to the result can not overwrite what follows.
func (c *Churn) carved(start int) []byte {
	return c.arena[start:len(c.arena):len(c.arena)]
}

// mix64 is the SplitMix64 finalizer: a bijection that spreads the bits of
// x, used to give each client a fixed pseudo-random attribute.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}
