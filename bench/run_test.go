package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestServeChild(t *testing.T) {
	ops := map[string]childOp{
		"echo": func(args json.RawMessage) (any, error) {
			var s string
			err := json.Unmarshal(args, &s)
			return s + "!", err
		},
		"fail": func(json.RawMessage) (any, error) { return nil, errors.New("it failed") },
	}
	in := strings.Join([]string{
		`{"op":"echo","args":"hi"}`,
		`{"op":"fail"}`,
		`{"op":"nope"}`,
		`not json`,
	}, "\n") + "\n"
	var out bytes.Buffer
	if code := serveChild(strings.NewReader(in), &out, ops); code != 0 {
		t.Fatalf("serveChild exited %d", code)
	}
	want := []response{
		{Result: json.RawMessage(`"hi!"`)},
		{Error: "it failed"},
		{Error: `unknown operation "nope"`},
		{Error: "invalid request line"},
	}
	dec := json.NewDecoder(&out)
	for i, w := range want {
		var got response
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if string(got.Result) != string(w.Result) || !strings.HasPrefix(got.Error, w.Error) {
			t.Errorf("response %d = %+v, want %+v", i, got, w)
		}
	}
	if err := dec.Decode(new(response)); err != io.EOF {
		t.Errorf("extra output after the last response: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, cfg := range []Config{
		{Only: []string{"fanout", "nope"}},
		{Contenders: []string{"raw", "kafka"}},
	} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("Validate(%+v) succeeded", cfg)
		}
	}
	ok := Config{Only: Scenarios, Contenders: contenderNames()}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate of every name: %v", err)
	}
}

// TestRunShortFanout runs the orchestrator with child processes (this test
// binary, through TestMain) for two contenders at small scale.
func TestRunShortFanout(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var log bytes.Buffer
	res, err := Run(ctx, Config{Short: true, Only: []string{ScenarioFanout}, Contenders: []string{contenderRaw, contenderGoroutine}, Log: &log})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, log.String())
	}
	want := len(shortScale.fanoutConns) + len(shortScale.frameSizes) - 1
	if len(res.Fanout) != 2*want {
		t.Fatalf("%d fanout results, want %d", len(res.Fanout), 2*want)
	}
	for _, f := range res.Fanout {
		if f.Subscribed != f.Conns {
			t.Errorf("%s at %d: %d subscribed", f.Contender, f.Conns, f.Subscribed)
		}
		if f.Deliveries != expectedDeliveries(f.Published, f.Conns, false) || f.Missing != 0 {
			t.Errorf("%s at %d: %d deliveries for %d published, %d missing", f.Contender, f.Conns, f.Deliveries, f.Published, f.Missing)
		}
		// How much of the offered rate a contender takes depends on the
		// machine; that the latency run delivered at all does not.
		if f.LatDelivered <= 0 || f.P99 <= 0 {
			t.Errorf("%s at %d: latency run received %.3f of the offered deliveries, p99 %v", f.Contender, f.Conns, f.LatDelivered, f.P99)
		}
	}
	md := res.Markdown("")
	if !strings.Contains(md, "goroutine per connection") {
		t.Errorf("Markdown lacks the goroutine contender:\n%s", md)
	}
}
