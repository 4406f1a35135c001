// Package leaktest finds goroutines that outlive a package's tests, for the
// TestMain of packages that start goroutines of their own.
package leaktest

import (
	"runtime"
	"strings"
	"time"
)

// Check waits up to wait for every goroutine whose stack contains one of
// the match substrings to end, and returns the stacks of those still
// running, or "" when none is. Stacks that contain one of the ignore
// substrings, and the stack of the goroutine that calls Check, are not
// counted.
func Check(wait time.Duration, match []string, ignore ...string) string {
	deadline := time.Now().Add(wait)
	for {
		leaked := matching(allStacks(), match, ignore)
		if len(leaked) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// allStacks returns the stacks of every goroutine, the caller's first,
// growing the buffer until they fit.
func allStacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Split(string(buf[:n]), "\n\n")
		}
		buf = make([]byte, 2*len(buf))
	}
}

func matching(stacks, match, ignore []string) []string {
	var leaked []string
	// runtime.Stack puts the calling goroutine first.
	for _, stack := range stacks[1:] {
		if containsAny(stack, match) && !containsAny(stack, ignore) {
			leaked = append(leaked, stack)
		}
	}
	return leaked
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
