// Command alqd-loadgen generates load for alqd and measures it.
//
//	alqd-loadgen churn [flags]   binding changes into the ingest API or a Kea lease file
//	alqd-loadgen swarm [flags]   many Active Leasequery requestors against the server
//
// Both stop by themselves after --duration or --count. They print a
// progress line on stderr once a second and a JSON summary on stdout at the
// end. The exit status is 1 when the run saw errors (for swarm: any message
// that did not decode, or any failed connection) and 2 for bad flags. They
// aim only at loopback addresses unless --allow-remote is given.
//
// Latency: churn stamps the send time of every change into the client
// DUID (--stamp duid, a DUID-EN of enterprise number 32473 whose last 8
// octets are Unix nanoseconds) or into a vendor option of the relay
// message (--stamp relay; swarm then needs --relay-data). The server
// passes both through unchanged, and swarm reports receipt time minus the
// stamp. Run churn and swarm on the same machine so that both read the same
// clock.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1 // the run saw errors
	exitUsage  = 2 // bad flags or configuration
)

const usage = `usage: alqd-loadgen churn|swarm [flags]

  churn   simulate DHCPv6 binding churn into alqd's ingest API or a Kea lease file
  swarm   open many Active Leasequery connections to alqd and measure them

Run "alqd-loadgen churn -h" or "alqd-loadgen swarm -h" for the flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs one subcommand and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "churn":
		return runChurn(ctx, args[1:], stdout, stderr)
	case "swarm":
		return runSwarm(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "alqd-loadgen: unknown subcommand %q\n%s", args[0], usage)
	return exitUsage
}

// parseFlags parses args into fs and reports a usage error on stderr.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (ok bool, code int) {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return false, exitOK
		}
		return false, exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "alqd-loadgen %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return false, exitUsage
	}
	return true, exitOK
}

// usageError prints a configuration error and returns exitUsage.
func usageError(stderr io.Writer, sub string, err error) int {
	fmt.Fprintf(stderr, "alqd-loadgen %s: %v\n", sub, err)
	return exitUsage
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// formatBytes formats n octets with a binary prefix.
func formatBytes(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}

// formatMicros formats a latency in microseconds.
func formatMicros(us int64) string {
	switch {
	case us >= 1_000_000:
		return fmt.Sprintf("%.2f s", float64(us)/1e6)
	case us >= 1000:
		return fmt.Sprintf("%.2f ms", float64(us)/1e3)
	}
	return fmt.Sprintf("%d µs", us)
}
