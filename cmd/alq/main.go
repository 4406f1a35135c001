// Command alq is a DHCPv6 Leasequery requestor: it asks a server about
// bindings over UDP (RFC 5007), in bulk over TCP (RFC 5460), follows them
// live with Active Leasequery (RFC 7653), and keeps a local mirror of them.
// docs/ALQ.md describes every command, flag, JSON field and exit code.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, isTerminal(os.Stderr))
	stop()
	os.Exit(code)
}

// env holds the outputs of a command.
type env struct {
	stdout   io.Writer
	stderr   io.Writer
	terminal bool // stderr is a terminal: draw progress
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, fs *flag.FlagSet, args []string, e env) (server string, err error)
}

var commands = []command{
	{"query", "ask about one binding over UDP (RFC 5007 Leasequery)", runQuery},
	{"bulk", "fetch every binding a query matches over TCP (RFC 5460 Bulk Leasequery)", runBulk},
	{"watch", "follow binding changes live (RFC 7653 Active Leasequery)", runWatch},
	{"mirror", "keep a local database of the server's bindings current", runMirror},
}

const usageText = `alq is a DHCPv6 Leasequery requestor.

Usage:
  alq <command> [flags]
  alq help [command]

Commands:
%s
Examples:
  alq query --server [2001:db8::53]:547 --address 2001:db8:1::10
  alq bulk  --server [2001:db8::53]:547 --link 2001:db8:1::1 --json |
      jq -r 'select(.event == "binding") | .address'
  alq watch --server [2001:db8::53]:547 --state /var/lib/alq/watch.json
  alq mirror --server [2001:db8::53]:547 --db /var/lib/alq/mirror --bulk-link 2001:db8:1::1

%s`

// run runs alq with args and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, terminal bool) int {
	e := env{stdout: stdout, stderr: stderr, terminal: terminal}
	if len(args) == 0 {
		printUsage(stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		return runHelp(args[1:], e)
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		fs := flag.NewFlagSet("alq "+c.name, flag.ContinueOnError)
		fs.SetOutput(stderr)
		server, err := c.run(ctx, fs, args[1:], e)
		if err == nil {
			return exitOK
		}
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		if errors.Is(err, errFlagParse) {
			return exitUsage // the flag package printed the problem and the usage
		}
		code, msg := explain(err, server)
		fmt.Fprintf(stderr, "alq %s: %s\n", c.name, msg)
		return code
	}
	fmt.Fprintf(stderr, "alq: unknown command %q\n\n", name)
	printUsage(stderr)
	return exitUsage
}

// errFlagParse marks a flag error the flag package already printed.
var errFlagParse = errors.New("invalid flags")

// parse parses flags, mapping the flag package's errors.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errFlagParse
	}
	return checkArgs(fs)
}

func printUsage(w io.Writer) {
	var list string
	for _, c := range commands {
		list += fmt.Sprintf("  %-7s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, usageText, list, exitCodesHelp)
}

// runHelp prints the overview, or one command's flags.
func runHelp(args []string, e env) int {
	if len(args) == 0 {
		printUsage(e.stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			fs := flag.NewFlagSet("alq "+c.name, flag.ContinueOnError)
			fs.SetOutput(e.stdout)
			c.run(context.Background(), fs, []string{"-h"}, env{stdout: e.stdout, stderr: e.stdout})
			fmt.Fprintf(e.stdout, "\n%s", exitCodesHelp)
			return exitOK
		}
	}
	fmt.Fprintf(e.stderr, "alq help: unknown command %q\n", args[0])
	return exitUsage
}

// setUsage gives a flag set a usage text with a one-line description.
func setUsage(fs *flag.FlagSet, synopsis, description string) {
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s\n\n%s\n\nFlags:\n", synopsis, description)
		fs.PrintDefaults()
	}
}
