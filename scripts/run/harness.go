package main

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

// harnessTB lets internal/keatest, whose API takes a testing.TB, run
// outside a test. keatest calls only the methods defined here; the
// embedded interface is nil, so any other method panics, which a test of
// this program would show at once. Fatal and Skip end the harness call
// through a panic that call recovers, as testing.T ends the test goroutine.
// Safe for concurrent use, because keatest reports from its own goroutines.
type harnessTB struct {
	testing.TB

	say func(format string, args ...any)

	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

// harnessStop is the panic value of Fatal and Skip.
type harnessStop struct{ msg string }

func newHarnessTB(say func(format string, args ...any)) *harnessTB {
	return &harnessTB{say: say}
}

// call runs f, which uses h, and returns the message of a Fatal or Skip
// that ended it as an error.
func (h *harnessTB) call(f func()) (err error) {
	defer func() {
		if v := recover(); v != nil {
			stop, ok := v.(harnessStop)
			if !ok {
				panic(v)
			}
			err = fmt.Errorf("%s", stop.msg)
		}
	}()
	f()
	return nil
}

// runCleanups runs the registered cleanups, the last registered first, as
// testing.T does. Each runs once.
func (h *harnessTB) runCleanups() {
	for {
		h.mu.Lock()
		if len(h.cleanups) == 0 {
			h.mu.Unlock()
			return
		}
		f := h.cleanups[len(h.cleanups)-1]
		h.cleanups = slices.Delete(h.cleanups, len(h.cleanups)-1, len(h.cleanups))
		h.mu.Unlock()
		if err := h.call(f); err != nil {
			h.say("cleanup failed: %v", err)
		}
	}
}

func (h *harnessTB) Helper() {}

func (h *harnessTB) Name() string { return "make run" }

func (h *harnessTB) Cleanup(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cleanups = append(h.cleanups, f)
}

func (h *harnessTB) Failed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failed
}

func (h *harnessTB) Log(args ...any) { h.say("%s", fmt.Sprint(args...)) }

func (h *harnessTB) Logf(format string, args ...any) { h.say(format, args...) }

func (h *harnessTB) Error(args ...any) {
	h.fail()
	h.say("%s", fmt.Sprint(args...))
}

func (h *harnessTB) Errorf(format string, args ...any) {
	h.fail()
	h.say(format, args...)
}

func (h *harnessTB) Fatal(args ...any) {
	h.fail()
	panic(harnessStop{msg: fmt.Sprint(args...)})
}

func (h *harnessTB) Fatalf(format string, args ...any) {
	h.fail()
	panic(harnessStop{msg: fmt.Sprintf(format, args...)})
}

func (h *harnessTB) Skip(args ...any) { panic(harnessStop{msg: fmt.Sprint(args...)}) }

func (h *harnessTB) Skipf(format string, args ...any) {
	panic(harnessStop{msg: fmt.Sprintf(format, args...)})
}

func (h *harnessTB) fail() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failed = true
}
