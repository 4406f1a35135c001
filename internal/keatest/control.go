package keatest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
)

// Result codes of Kea's control channel (Kea ARM, "Management API").
const (
	ResultSuccess     = 0 // the command succeeded
	ResultError       = 1 // the command failed
	ResultUnsupported = 2 // the command is not supported
	ResultEmpty       = 3 // the command succeeded but found nothing
)

// defaultControlTimeout bounds a command when the context has no deadline.
const defaultControlTimeout = 30 * time.Second

// Control is a client for the unix control socket of kea-dhcp6. The socket is
// a file, so it is reachable from any network namespace. Each command uses its
// own connection, because Kea handles one command per connection and then
// closes it. The zero value is unusable; a Control is safe for concurrent use.
type Control struct {
	SocketPath string
}

// Response is the response of Kea to one command.
type Response struct {
	Result    int             `json:"result"`
	Text      string          `json:"text"`
	Arguments json.RawMessage `json:"arguments"`
}

// Command sends one command with optional arguments and returns Kea's
// response. It returns an error if the exchange fails or Kea responds with a
// result other than ResultSuccess or ResultEmpty; the response is returned
// as well in the latter case.
func (c *Control) Command(ctx context.Context, command string, arguments any) (Response, error) {
	request := struct {
		Command   string `json:"command"`
		Arguments any    `json:"arguments,omitempty"`
	}{command, arguments}
	body, err := json.Marshal(request)
	if err != nil {
		return Response{}, fmt.Errorf("keatest: encode Kea command %s: %w", command, err)
	}

	raw, err := c.exchange(ctx, body)
	if err != nil {
		return Response{}, fmt.Errorf("keatest: Kea command %s on %s: %w", command, c.SocketPath, err)
	}

	// kea-dhcp6 responds with one object, and the control agent wraps them in
	// a list, which is accepted too.
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '[' {
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil || len(list) != 1 {
			return Response{}, fmt.Errorf("keatest: Kea command %s: invalid response list %.200q", command, raw)
		}
		raw = list[0]
	}
	var resp Response
	if err := json.Unmarshal(raw, &resp); err != nil {
		return Response{}, fmt.Errorf("keatest: Kea command %s: invalid response %.200q: %w", command, raw, err)
	}
	if resp.Result != ResultSuccess && resp.Result != ResultEmpty {
		return resp, fmt.Errorf("keatest: Kea command %s failed with result %d: %s", command, resp.Result, resp.Text)
	}
	return resp, nil
}

// exchange writes body and reads the response until Kea closes the
// connection.
func (c *Control) exchange(ctx context.Context, body []byte) ([]byte, error) {
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "unix", c.SocketPath)
	if err != nil {
		return nil, err
	}
	defer conn.Close()

	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(defaultControlTimeout)
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	if _, err := conn.Write(body); err != nil {
		return nil, err
	}
	return io.ReadAll(conn)
}

// Leases returns every DHCPv6 lease Kea holds in memory (lease6-get-all),
// including expired-reclaimed leases that are still held.
func (c *Control) Leases(ctx context.Context) ([]Lease, error) {
	resp, err := c.Command(ctx, "lease6-get-all", nil)
	if err != nil {
		return nil, err
	}
	if resp.Result == ResultEmpty {
		return nil, nil
	}
	return parseLeases(resp.Arguments)
}

// ReclaimExpired makes Kea reclaim its expired leases now (leases-reclaim).
// With remove set, reclaimed leases are deleted instead of being held for
// Config.HoldReclaimedTime.
func (c *Control) ReclaimExpired(ctx context.Context, remove bool) error {
	_, err := c.Command(ctx, "leases-reclaim", map[string]bool{"remove": remove})
	return err
}

// DeleteLease deletes one lease (lease6-del), which Kea writes to the lease
// file as a deletion row. typ must be TypeNA, TypeTA or TypePD.
func (c *Control) DeleteLease(ctx context.Context, typ LeaseType, addr netip.Addr) error {
	_, err := c.Command(ctx, "lease6-del", map[string]string{"ip-address": addr.String(), "type": typ.String()})
	return err
}
