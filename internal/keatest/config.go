package keatest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/template"
	"time"
)

// Config sets the parts of the Kea configuration that tests vary. The zero
// value works: it gives the short lifetimes below, multi-threading on and LFC
// off. Durations must be whole seconds, because Kea's configuration counts in
// seconds.
type Config struct {
	// ValidLifetime and PreferredLifetime are the lifetimes Kea grants to
	// every lease (Kea "valid-lifetime", "preferred-lifetime"). Defaults 30 s
	// and 20 s, so that unrenewed leases expire within the test.
	ValidLifetime     time.Duration
	PreferredLifetime time.Duration

	// RenewTimer and RebindTimer are T1 and T2 sent to clients (Kea
	// "renew-timer", "rebind-timer"). Defaults 10 s and 16 s.
	RenewTimer  time.Duration
	RebindTimer time.Duration

	// HoldReclaimedTime is how long Kea keeps an expired, reclaimed lease
	// (state 2) before it flushes it (Kea "hold-reclaimed-time"). Default
	// 20 s. It is never 0: with 0, Kea 2.2 writes expiry as a deletion row
	// that looks exactly like a Release in the lease file.
	HoldReclaimedTime time.Duration

	// ReclaimTimerWait and FlushReclaimedTimerWait are the periods of Kea's
	// reclamation and flush timers (Kea "reclaim-timer-wait-time",
	// "flush-reclaimed-timer-wait-time"). Defaults 2 s and 5 s.
	ReclaimTimerWait        time.Duration
	FlushReclaimedTimerWait time.Duration

	// LFCInterval is the period of lease file cleanup (Kea "lfc-interval"),
	// which renames the live lease file and compacts it. 0, the default,
	// disables LFC.
	LFCInterval time.Duration

	// SingleThreaded turns Kea's packet-processing multi-threading off. By
	// default Kea runs with a thread pool of 2.
	SingleThreaded bool
}

// Default values of Config, chosen so that a lease that is not renewed goes
// through expiry and flush within a minute.
const (
	defaultValidLifetime           = 30 * time.Second
	defaultPreferredLifetime       = 20 * time.Second
	defaultRenewTimer              = 10 * time.Second
	defaultRebindTimer             = 16 * time.Second
	defaultHoldReclaimedTime       = 20 * time.Second
	defaultReclaimTimerWait        = 2 * time.Second
	defaultFlushReclaimedTimerWait = 5 * time.Second
)

// withDefaults returns a copy of c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	setDefault := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	setDefault(&c.ValidLifetime, defaultValidLifetime)
	setDefault(&c.PreferredLifetime, defaultPreferredLifetime)
	setDefault(&c.RenewTimer, defaultRenewTimer)
	setDefault(&c.RebindTimer, defaultRebindTimer)
	setDefault(&c.HoldReclaimedTime, defaultHoldReclaimedTime)
	setDefault(&c.ReclaimTimerWait, defaultReclaimTimerWait)
	setDefault(&c.FlushReclaimedTimerWait, defaultFlushReclaimedTimerWait)
	return c
}

// Validate returns an error if a duration is negative or not a whole number
// of seconds, or if the timers are out of the order RFC 8415 section 21.4
// requires (T1 <= T2 <= preferred <= valid).
func (c Config) Validate() error {
	c = c.withDefaults()
	fields := []struct {
		name  string
		value time.Duration
	}{
		{"ValidLifetime", c.ValidLifetime},
		{"PreferredLifetime", c.PreferredLifetime},
		{"RenewTimer", c.RenewTimer},
		{"RebindTimer", c.RebindTimer},
		{"HoldReclaimedTime", c.HoldReclaimedTime},
		{"ReclaimTimerWait", c.ReclaimTimerWait},
		{"FlushReclaimedTimerWait", c.FlushReclaimedTimerWait},
		{"LFCInterval", c.LFCInterval},
	}
	for _, f := range fields {
		if f.value < 0 || f.value%time.Second != 0 {
			return fmt.Errorf("keatest: Config.%s is %v; it must be a non-negative whole number of seconds", f.name, f.value)
		}
	}
	if !(c.RenewTimer <= c.RebindTimer && c.RebindTimer <= c.PreferredLifetime && c.PreferredLifetime <= c.ValidLifetime) {
		return fmt.Errorf("keatest: Config timers renew %v, rebind %v, preferred %v, valid %v are out of order; each must be at most the next",
			c.RenewTimer, c.RebindTimer, c.PreferredLifetime, c.ValidLifetime)
	}
	return nil
}

// File names inside a Kea work directory.
const (
	configFileName    = "kea-dhcp6.json"
	leaseFileName     = "leases6.csv"
	controlSocketName = "kea6-ctrl.sock"
	logFileName       = "kea-dhcp6.log"
	stdoutFileName    = "kea-stdout.log"
)

// templateData is the data testdata/kea/kea-dhcp6.json.tmpl is executed with.
type templateData struct {
	WorkDir             string
	LeaseFile           string
	ControlSocket       string
	LogFile             string
	LeaseCmdsHook       string
	ServerInterface     string
	ServerInterfaceAddr string // "iface/addr": makes Kea bind the global address for unicast relay traffic

	ValidLifetimeSeconds           int64
	PreferredLifetimeSeconds       int64
	RenewTimerSeconds              int64
	RebindTimerSeconds             int64
	HoldReclaimedTimeSeconds       int64
	ReclaimTimerWaitSeconds        int64
	FlushReclaimedTimerWaitSeconds int64
	LFCIntervalSeconds             int64
	MultiThreading                 bool
}

// renderConfig executes the Kea configuration template for a work directory
// and returns the JSON text. The caller has validated c.
func renderConfig(tmplText string, c Config, workDir, leaseCmdsHook string) ([]byte, error) {
	c = c.withDefaults()
	seconds := func(d time.Duration) int64 { return int64(d / time.Second) }
	data := templateData{
		WorkDir:             workDir,
		LeaseFile:           filepath.Join(workDir, leaseFileName),
		ControlSocket:       filepath.Join(workDir, controlSocketName),
		LogFile:             filepath.Join(workDir, logFileName),
		LeaseCmdsHook:       leaseCmdsHook,
		ServerInterface:     ServerInterface,
		ServerInterfaceAddr: ServerInterface + "/" + ServerAddr.String(),

		ValidLifetimeSeconds:           seconds(c.ValidLifetime),
		PreferredLifetimeSeconds:       seconds(c.PreferredLifetime),
		RenewTimerSeconds:              seconds(c.RenewTimer),
		RebindTimerSeconds:             seconds(c.RebindTimer),
		HoldReclaimedTimeSeconds:       seconds(c.HoldReclaimedTime),
		ReclaimTimerWaitSeconds:        seconds(c.ReclaimTimerWait),
		FlushReclaimedTimerWaitSeconds: seconds(c.FlushReclaimedTimerWait),
		LFCIntervalSeconds:             seconds(c.LFCInterval),
		MultiThreading:                 !c.SingleThreaded,
	}

	tmpl, err := template.New("kea-dhcp6.json").
		Option("missingkey=error").
		Funcs(template.FuncMap{"json": jsonString}).
		Parse(tmplText)
	if err != nil {
		return nil, fmt.Errorf("keatest: parse the Kea configuration template: %w", err)
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, data); err != nil {
		return nil, fmt.Errorf("keatest: execute the Kea configuration template: %w", err)
	}
	if !json.Valid(out.Bytes()) {
		return nil, errors.New("keatest: the rendered Kea configuration is not valid JSON; check testdata/kea/kea-dhcp6.json.tmpl")
	}
	return out.Bytes(), nil
}

// jsonString quotes s as a JSON string for the template.
func jsonString(s string) (string, error) {
	b, err := json.Marshal(s)
	return string(b), err
}

// testdataFile returns the path of name inside the module's testdata/kea
// directory, found by walking up from the working directory, which go test
// sets to the directory of the package under test.
func testdataFile(name string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("keatest: find testdata/kea: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			path := filepath.Join(dir, "testdata", "kea", name)
			if _, err := os.Stat(path); err != nil {
				return "", fmt.Errorf("keatest: %s is missing from the module at %s: %w", filepath.Join("testdata", "kea", name), dir, err)
			}
			return path, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("keatest: no go.mod found above the working directory; run the tests with go test inside the module")
		}
		dir = parent
	}
}
