package loadgen

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

// RequireLoopback returns nil when target, a host or host:port, names only
// loopback addresses (127.0.0.0/8 or ::1), or when allowRemote is set. A
// host name is resolved, and every address it resolves to must be on
// loopback. Otherwise the error wraps ErrNotLoopback.
func RequireLoopback(ctx context.Context, target string, allowRemote bool) error {
	if allowRemote {
		return nil
	}
	host := target
	if h, _, err := net.SplitHostPort(target); err == nil {
		host = h
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		if !addr.Unmap().IsLoopback() {
			return fmt.Errorf("%w: %s; pass --allow-remote to load a remote server", ErrNotLoopback, target)
		}
		return nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("loadgen: resolving target %s: %w", target, err)
	}
	for _, a := range addrs {
		if !a.Unmap().IsLoopback() {
			return fmt.Errorf("%w: %s resolves to %s; pass --allow-remote to load a remote server", ErrNotLoopback, target, a)
		}
	}
	return nil
}
