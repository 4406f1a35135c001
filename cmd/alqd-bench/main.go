// Command alqd-bench is the end-to-end benchmark harness of alqd. It starts
// each fanout contender (alqd, a raw epoll writer, nats-server and a
// goroutine-per-connection server) on loopback in its own process. Separate
// client processes put the same load through each. It also measures idle
// memory, slow consumers, ingest, bulk dump and catch-up, and prints ratios
// against anchors measured in the same run.
//
// Usage:
//
//	alqd-bench [-short] [-only fanout,filtered,idle,slow,store]
//	           [-contenders raw,alqd,nats,goroutine]
//	           [-doc docs/BENCHMARKS.md] [-img docs/img] [-json FILE]
//
// It exits 1 only when a contender or child process crashed or a received
// message failed to decode; timings and missed goals never fail it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/alqd/alqd/bench"
)

func main() {
	if role := bench.ChildRole(); role != "" {
		os.Exit(bench.RunChild(role))
	}
	os.Exit(run())
}

func run() int {
	var (
		short      = flag.Bool("short", false, "run every contender and scenario at small scale (under 3 minutes)")
		only       = flag.String("only", "", "comma-separated scenarios to run: "+strings.Join(bench.Scenarios, ", ")+" (default all)")
		names      = flag.String("contenders", "", "comma-separated fanout contenders: raw, alqd, nats, goroutine (default all)")
		doc        = flag.String("doc", "", "Markdown file whose \""+bench.SectionHeading+"\" section is replaced with the results")
		img        = flag.String("img", "", "directory for the PNG plots (linked from -doc relative to its directory)")
		jsonOut    = flag.String("json", "", "file to write the raw results to as JSON")
		timeout    = flag.Duration("timeout", 25*time.Minute, "stop the run after this long")
		profiles   = flag.String("cpuprofile", "", "directory for a CPU profile of the server process of every fanout, filtered and slow measurement")
		fromJSON   = flag.String("from-json", "", "measure nothing: render -doc and -img from results a run wrote with -json")
		allowShort = flag.Bool("write-short", false, "allow -doc and -img with -short (smoke numbers are not comparable)")
	)
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "alqd-bench: unexpected argument %q; see -h\n", flag.Arg(0))
		return 2
	}
	if *short && (*doc != "" || *img != "") && !*allowShort {
		fmt.Fprintln(os.Stderr, "alqd-bench: -short results are not written to -doc or -img; add -write-short to force it")
		return 2
	}
	imgRel := ""
	if *doc != "" && *img != "" {
		rel, err := filepath.Rel(filepath.Dir(*doc), *img)
		if err != nil {
			fmt.Fprintf(os.Stderr, "alqd-bench: -img %q is not reachable from -doc %q: %v\n", *img, *doc, err)
			return 2
		}
		imgRel = filepath.ToSlash(rel)
	}

	if *fromJSON != "" {
		return render(*fromJSON, *doc, *img, imgRel)
	}

	cfg := bench.Config{
		Short:      *short,
		Only:       splitList(*only),
		Contenders: splitList(*names),
		Log:        os.Stdout,
		Command:    "alqd-bench " + strings.Join(os.Args[1:], " "),
		ProfileDir: *profiles,
	}
	if cfg.ProfileDir != "" {
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "alqd-bench: -cpuprofile: %v\n", err)
			return 2
		}
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "alqd-bench: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	res, err := bench.Run(ctx, cfg)
	if res == nil {
		fmt.Fprintf(os.Stderr, "alqd-bench: %v\n", err)
		return 2
	}
	res.WriteSummary(os.Stdout)
	if werr := writeOutputs(res, *doc, *img, imgRel, *jsonOut); werr != nil {
		fmt.Fprintf(os.Stderr, "alqd-bench: %v\n", werr)
		return 1
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "alqd-bench: %v\n", err)
		if errors.Is(err, bench.ErrFailed) {
			return 1
		}
		return 2
	}
	return 0
}

// writeOutputs writes the plots, the Markdown section and the JSON file
// that were asked for.
func writeOutputs(res *bench.Results, doc, img, imgRel, jsonOut string) error {
	if img != "" {
		if err := res.WritePlots(img); err != nil {
			return fmt.Errorf("writing plots to %s: %w", img, err)
		}
	}
	if doc != "" {
		if err := bench.UpdateDocument(doc, res.Markdown(imgRel)); err != nil {
			return fmt.Errorf("updating %s: %w", doc, err)
		}
	}
	if jsonOut != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(jsonOut, b, 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", jsonOut, err)
		}
	}
	return nil
}

// render writes the outputs of a run from its JSON results.
func render(path, doc, img, imgRel string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "alqd-bench: -from-json: %v\n", err)
		return 2
	}
	var res bench.Results
	if err := json.Unmarshal(b, &res); err != nil {
		fmt.Fprintf(os.Stderr, "alqd-bench: -from-json %s: invalid results: %v\n", path, err)
		return 2
	}
	if err := writeOutputs(&res, doc, img, imgRel, ""); err != nil {
		fmt.Fprintf(os.Stderr, "alqd-bench: %v\n", err)
		return 1
	}
	return 0
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
