package main

import "testing"

func TestBindingCount(t *testing.T) {
	for n, want := range map[int]string{0: "0 bindings", 1: "1 binding", 2: "2 bindings", 12345: "12345 bindings"} {
		if got := bindingCount(n); got != want {
			t.Errorf("bindingCount(%d) = %q, want %q", n, got, want)
		}
	}
}
