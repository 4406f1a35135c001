package keatest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// SkipEnv is the environment variable that turns a missing Kea setup from a
// test failure into an explicit skip. Its only accepted value is "1".
const SkipEnv = "ALQD_SKIP_KEA"

// hooksDirs are the directories where Debian and upstream installs of Kea put
// their hook libraries, in the order they are searched.
var hooksDirs = []string{
	"/usr/lib/x86_64-linux-gnu/kea/hooks",
	"/usr/lib/aarch64-linux-gnu/kea/hooks",
	"/usr/lib/kea/hooks",
	"/usr/local/lib/kea/hooks",
}

// leaseCmdsLibrary is the hook library that adds the lease6-* commands to
// Kea's control socket.
const leaseCmdsLibrary = "libdhcp_lease_cmds.so"

// Require fails the test unless it runs as root and kea-dhcp6, perfdhcp, ip
// and Kea's lease_cmds hook library are installed. When ALQD_SKIP_KEA=1 is
// set, Require skips the test instead, whether or not the tools are present,
// so that the skip is always a choice the developer made.
func Require(t testing.TB) {
	t.Helper()

	switch v := os.Getenv(SkipEnv); v {
	case "":
	case "1":
		t.Skipf("%s=1 is set: skipping a test that needs root and a real Kea DHCPv6 server", SkipEnv)
	default:
		t.Fatalf("%s=%q is invalid: set it to 1 to skip the Kea tests, or unset it to run them", SkipEnv, v)
	}

	if problems := missingRequirements(); len(problems) > 0 {
		t.Fatalf("this test needs root and a real Kea DHCPv6 server, but %s; "+
			"run .ci/run as root on Debian 12 (it installs kea-dhcp6-server and kea-admin), "+
			"or set %s=1 to skip the Kea tests explicitly",
			strings.Join(problems, "; "), SkipEnv)
	}
}

// missingRequirements returns one sentence fragment per missing requirement.
func missingRequirements() []string {
	var problems []string
	if os.Geteuid() != 0 {
		problems = append(problems, fmt.Sprintf("the test runs as uid %d, not root", os.Geteuid()))
	}
	for _, tool := range []string{"kea-dhcp6", "perfdhcp", "ip"} {
		if _, err := findTool(tool); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if _, err := findLeaseCmdsHook(); err != nil {
		problems = append(problems, err.Error())
	}
	return problems
}

// findTool returns the path of a command, looking in PATH first and then in
// /usr/sbin and /sbin, which are not in PATH for every user.
func findTool(name string) (string, error) {
	if path, err := exec.LookPath(name); err == nil {
		return path, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		path := filepath.Join(dir, name)
		if info, err := os.Stat(path); err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0 {
			return path, nil
		}
	}
	return "", fmt.Errorf("command %s was not found in PATH, /usr/sbin or /sbin", name)
}

// findLeaseCmdsHook returns the path of Kea's lease_cmds hook library.
func findLeaseCmdsHook() (string, error) {
	for _, dir := range hooksDirs {
		path := filepath.Join(dir, leaseCmdsLibrary)
		if _, err := os.Stat(path); err == nil {
			return path, nil
		}
	}
	return "", fmt.Errorf("hook library %s of Kea was not found in %s", leaseCmdsLibrary, strings.Join(hooksDirs, ", "))
}
