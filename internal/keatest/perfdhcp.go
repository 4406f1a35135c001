package keatest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// perfdhcpGrace is how long a perfdhcp run may take beyond Load.Duration
// (start-up and the wait for late replies) before it is killed.
const perfdhcpGrace = 15 * time.Second

// perfdhcpIncomplete is perfdhcp's exit status when some exchanges did not
// complete. Its first exchange is usually lost while sockets settle, so this
// status is normal.
const perfdhcpIncomplete = 3

// Default base MAC addresses, from which perfdhcp derives client DUIDs
// (DUID-LLT). Direct and relayed clients use different bases so that they
// never share a DUID.
var (
	defaultDirectBaseMAC  = net.HardwareAddr{0x00, 0x0c, 0x01, 0x00, 0x00, 0x01}
	defaultRelayedBaseMAC = net.HardwareAddr{0x00, 0x0c, 0x02, 0x00, 0x00, 0x01}
)

// Load is one bounded perfdhcp run: Solicit, Advertise, Request, Reply
// exchanges with IA_NA and IA_PD in every message (perfdhcp
// "-e address-and-prefix", so each Reply writes two lease rows), plus Renew
// and Release of leases already obtained.
type Load struct {
	// Relayed sends every message as a Relay-forward through the relay shim
	// (perfdhcp -A1), with a link-address taken at random from
	// testdata/kea/relays.txt. A RelayShim must be running. Otherwise the
	// clients are directly on the server's link.
	Relayed bool

	// Rate is the number of new four-message exchanges started per second
	// (perfdhcp -r). Required.
	Rate int

	// RenewRate and ReleaseRate are Renew and Release messages per second,
	// sent on top of Rate for leases already obtained (perfdhcp -f, -F).
	RenewRate   int
	ReleaseRate int

	// Clients is the number of simulated clients (perfdhcp -R). Clients are
	// picked at random, so with fewer clients than exchanges a client asks
	// again and Kea extends its lease. Default 1000.
	Clients int

	// Duration bounds the run (perfdhcp -p). Required, a whole number of
	// seconds.
	Duration time.Duration

	// MaxExchanges, if positive, also stops the run after that many
	// exchanges were started (perfdhcp -n).
	MaxExchanges int

	// BaseMAC is the link-layer address from which perfdhcp derives client
	// DUIDs (perfdhcp -b mac=). Default 00:0c:01:00:00:01 for direct and
	// 00:0c:02:00:00:01 for relayed clients.
	BaseMAC net.HardwareAddr
}

// PerfdhcpResult is the report of one perfdhcp run.
type PerfdhcpResult struct {
	// Output is perfdhcp's standard output and standard error.
	Output string
	// Exchanges holds the statistics per exchange, keyed by perfdhcp's name
	// of it: "SOLICIT-ADVERTISE", "REQUEST-REPLY", "RENEW-REPLY",
	// "RELEASE-REPLY".
	Exchanges map[string]ExchangeStats
}

// ExchangeStats counts the packets of one kind of exchange.
type ExchangeStats struct {
	Sent     uint64
	Received uint64
	Drops    uint64
}

// validate returns an error for a load that would not be bounded.
func (l Load) validate() error {
	if l.Rate <= 0 {
		return fmt.Errorf("keatest: Load.Rate is %d; it must be positive", l.Rate)
	}
	if l.RenewRate < 0 || l.ReleaseRate < 0 || l.Clients < 0 || l.MaxExchanges < 0 {
		return errors.New("keatest: Load rates, Clients and MaxExchanges must not be negative")
	}
	if l.Duration < time.Second || l.Duration%time.Second != 0 {
		return fmt.Errorf("keatest: Load.Duration is %v; it must be a whole number of seconds, at least 1 s", l.Duration)
	}
	if l.BaseMAC != nil && len(l.BaseMAC) != 6 {
		return fmt.Errorf("keatest: Load.BaseMAC %v is not a 6-byte MAC address", l.BaseMAC)
	}
	return nil
}

// perfdhcpArgs returns the perfdhcp arguments for the load. relaysFile is
// the list of link-addresses for relayed runs.
func (l Load) perfdhcpArgs(relaysFile string) []string {
	clients := l.Clients
	if clients == 0 {
		clients = 1000
	}
	baseMAC := l.BaseMAC
	if baseMAC == nil {
		baseMAC = defaultDirectBaseMAC
		if l.Relayed {
			baseMAC = defaultRelayedBaseMAC
		}
	}

	// -g single: one thread, which drops fewer packets than the default on
	// a machine with few cores.
	args := []string{"-6", "-g", "single",
		"-r", strconv.Itoa(l.Rate),
		"-R", strconv.Itoa(clients),
		"-p", strconv.FormatInt(int64(l.Duration/time.Second), 10),
		"-e", "address-and-prefix",
		"-b", "mac=" + baseMAC.String(),
	}
	if l.RenewRate > 0 {
		args = append(args, "-f", strconv.Itoa(l.RenewRate))
	}
	if l.ReleaseRate > 0 {
		args = append(args, "-F", strconv.Itoa(l.ReleaseRate))
	}
	if l.MaxExchanges > 0 {
		args = append(args, "-n", strconv.Itoa(l.MaxExchanges))
	}
	if !l.Relayed {
		// Send Solicit to All_DHCP_Relay_Agents_and_Servers from the
		// link-local address of the client interface.
		return append(args, "-l", ClientInterface)
	}
	// Relayed: bind [ClientAddr]:547 and send one level of Relay-forward to
	// the shim.
	return append(args, "-l", ClientAddr.String(), "-A1", "-J", relaysFile, ShimAddr.String())
}

// RunPerfdhcp runs perfdhcp with the load in topo's client namespace and waits
// for it. The run is bounded by load.Duration; perfdhcp is killed if it takes
// perfdhcpGrace longer, or when ctx ends. Exit status 3 (some exchanges not
// completed) is not an error.
func RunPerfdhcp(ctx context.Context, topo *Topology, load Load) (PerfdhcpResult, error) {
	if err := load.validate(); err != nil {
		return PerfdhcpResult{}, err
	}
	perfdhcp, err := findTool("perfdhcp")
	if err != nil {
		return PerfdhcpResult{}, err
	}
	relaysFile := ""
	if load.Relayed {
		if relaysFile, err = testdataFile("relays.txt"); err != nil {
			return PerfdhcpResult{}, err
		}
	}

	ctx, cancel := context.WithTimeout(ctx, load.Duration+perfdhcpGrace)
	defer cancel()
	argv := topo.ExecArgs(topo.ClientNamespace, perfdhcp, load.perfdhcpArgs(relaysFile)...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	out, err := runChild(cmd)

	result := PerfdhcpResult{Output: string(out), Exchanges: parsePerfdhcpStats(string(out))}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && exitErr.ExitCode() == perfdhcpIncomplete {
		err = nil
	}
	if ctx.Err() != nil {
		return result, fmt.Errorf("perfdhcp %s did not finish within %v: %w", strings.Join(argv[4:], " "), load.Duration+perfdhcpGrace, ctx.Err())
	}
	if err != nil {
		return result, fmt.Errorf("perfdhcp %s failed: %w\n%s", strings.Join(argv[4:], " "), err, out)
	}
	return result, nil
}

// parsePerfdhcpStats reads the "***Statistics for: NAME***" sections of
// perfdhcp's report.
func parsePerfdhcpStats(output string) map[string]ExchangeStats {
	stats := make(map[string]ExchangeStats)
	current := ""
	scanner := bufio.NewScanner(strings.NewReader(output))
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		if name, ok := strings.CutPrefix(line, "***Statistics for: "); ok {
			current = strings.TrimSuffix(name, "***")
			stats[current] = ExchangeStats{}
			continue
		}
		if current == "" {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(value), 10, 64)
		if err != nil {
			continue
		}
		s := stats[current]
		switch key {
		case "sent packets":
			s.Sent = n
		case "received packets":
			s.Received = n
		case "drops":
			s.Drops = n
		}
		stats[current] = s
	}
	return stats
}

// RelayLinks returns the link-addresses in testdata/kea/relays.txt, from which
// perfdhcp picks the link-address of each relayed client.
func RelayLinks() ([]netip.Addr, error) {
	path, err := testdataFile("relays.txt")
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keatest: read relay links: %w", err)
	}
	var links []netip.Addr
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		addr, err := netip.ParseAddr(line)
		if err != nil {
			return nil, fmt.Errorf("keatest: %s line %d: %w", path, i+1, err)
		}
		links = append(links, addr)
	}
	return links, nil
}
