//go:build !linux

package main

import "os"

// isTerminal reports false on systems where alq does not check, so that no
// progress line is drawn there.
func isTerminal(*os.File) bool { return false }
