package leaktest

import (
	"strings"
	"testing"
	"time"
)

func parkedLeaker(started, stop chan struct{}) {
	close(started)
	<-stop
}

func TestCheckFindsRunningGoroutine(t *testing.T) {
	started, stop := make(chan struct{}), make(chan struct{})
	go parkedLeaker(started, stop)
	<-started

	leaked := Check(50*time.Millisecond, []string{"leaktest.parkedLeaker"})
	if !strings.Contains(leaked, "parkedLeaker") {
		t.Errorf("Check returned %q, want the parked goroutine's stack", leaked)
	}
	if got := Check(50*time.Millisecond, []string{"leaktest.parkedLeaker"}, "parkedLeaker"); got != "" {
		t.Errorf("Check with the goroutine ignored returned %q, want none", got)
	}

	close(stop)
	if got := Check(5*time.Second, []string{"leaktest.parkedLeaker"}); got != "" {
		t.Errorf("Check after the goroutine ended returned %q, want none", got)
	}
}

func TestCheckSkipsCaller(t *testing.T) {
	if got := Check(0, []string{"leaktest.TestCheckSkipsCaller"}); got != "" {
		t.Errorf("Check counted its caller: %q", got)
	}
}
