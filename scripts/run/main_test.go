package main

import (
	"bytes"
	"net"
	"strings"
	"testing"
)

func TestParseOptions(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		args    []string
		want    options
		wantErr string
	}{
		{"defaults", nil, nil, options{bin: "bin", seconds: 30, mode: "auto"}, ""},
		{"environment", map[string]string{"RUN_SECONDS": "5", "RUN_MODE": "loadgen"}, nil, options{bin: "bin", seconds: 5, mode: "loadgen"}, ""},
		{"flags over environment", map[string]string{"RUN_SECONDS": "5"}, []string{"-seconds", "7", "-mode", "kea", "-bin", "/x"}, options{bin: "/x", seconds: 7, mode: "kea"}, ""},
		{"seconds not a number", map[string]string{"RUN_SECONDS": "5s"}, nil, options{}, "whole number"},
		{"zero seconds", nil, []string{"-seconds", "0"}, options{}, "out of range"},
		{"unknown mode", nil, []string{"-mode", "pgsql"}, options{}, "invalid"},
		{"extra argument", nil, []string{"now"}, options{}, "unexpected argument"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("RUN_SECONDS", c.env["RUN_SECONDS"])
			t.Setenv("RUN_MODE", c.env["RUN_MODE"])
			got, err := parseOptions(c.args)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Errorf("parseOptions(%q) error = %v, want one mentioning %q", c.args, err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("parseOptions(%q) = %+v, want %+v", c.args, got, c.want)
			}
		})
	}
}

func TestEventCounterSplitLines(t *testing.T) {
	var out bytes.Buffer
	c := &eventCounter{out: &out}
	input := `{"event":"connected","attempt":1}` + "\n" +
		`{"event":"binding","state":"active"}` + "\n" +
		`{"event":"binding","state":"ended"}` + "\n" +
		"not json\n" +
		`{"event":"binding","state":"active"}`
	// Writes split inside lines, as a pipe delivers them.
	for i := 0; i < len(input); i += 7 {
		if _, err := c.Write([]byte(input[i:min(i+7, len(input))])); err != nil {
			t.Fatal(err)
		}
	}
	if out.String() != input {
		t.Errorf("the output is %q, want the input passed through", out.String())
	}
	events, active, ended := c.counts()
	if events != 3 || active != 1 || ended != 1 {
		t.Errorf("counted %d events, %d active and %d ended, want 3, 1 and 1 (the last line is incomplete)", events, active, ended)
	}
}

func TestHarnessFatalAndCleanups(t *testing.T) {
	h := newHarnessTB(func(string, ...any) {})
	var order []int
	err := h.call(func() {
		h.Cleanup(func() { order = append(order, 1) })
		h.Cleanup(func() { order = append(order, 2) })
		h.Fatalf("stop here: %d", 42)
		order = append(order, 99) // must not run
	})
	if err == nil || err.Error() != "stop here: 42" {
		t.Errorf("call returned %v, want the Fatalf message", err)
	}
	if !h.Failed() {
		t.Error("Failed() is false after Fatalf")
	}
	h.runCleanups()
	if len(order) != 2 || order[0] != 2 || order[1] != 1 {
		t.Errorf("cleanups ran in order %v, want [2 1]", order)
	}

	if err := h.call(func() { h.Skipf("no Kea") }); err == nil || err.Error() != "no Kea" {
		t.Errorf("call returned %v after Skipf, want its message", err)
	}
}

func TestFreePortsDistinct(t *testing.T) {
	ports, err := freePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[uint16]bool)
	for _, p := range ports {
		if !p.Addr().IsLoopback() {
			t.Errorf("port %s is not on loopback", p)
		}
		if seen[p.Port()] {
			t.Errorf("port %d returned twice in %v", p.Port(), ports)
		}
		seen[p.Port()] = true
		ln, err := net.Listen("tcp", p.String())
		if err != nil {
			t.Errorf("port %s is not free after freePorts returned: %v", p, err)
			continue
		}
		ln.Close()
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[int]string{0: "0 events", 1: "1 event", 2: "2 events"} {
		if got := count(n, "event"); got != want {
			t.Errorf("count(%d) = %q, want %q", n, got, want)
		}
	}
}
