package loadgen

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alqd/alqd/store"
)

// KeaHeader is the header line, without newline, that Kea 2.2 writes at the
// start of every DHCPv6 memfile lease file (memfile schema 4.0).
const KeaHeader = "address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname,hwaddr,state,user_context,hwtype,hwaddr_source"

// Kea lease states written in the state column.
const (
	keaStateDefault   = 0
	keaStateReclaimed = 2
)

// AppendKeaRow appends the row that Kea 2.2 writes to its DHCPv6 memfile
// lease file for the lease change ch, newline included:
//
//   - new and renewed bindings: the granted lifetimes, state 0, expire =
//     CLTT + valid lifetime;
//   - released: valid and preferred lifetime 0, state 0, and expire = the
//     last CLTT, as Kea writes a Release;
//   - expired: the lease as it was, with state 2 (expired and reclaimed),
//     as Kea's reclaim timer writes it.
//
// Kea can not take a hardware address from a DUID-EN, so hwaddr, hwtype and
// hwaddr_source stay empty. The hostname is empty and the DNS update flags
// are 0.
// A relayed binding carries the relay in user_context as Kea 2.2 stores it
// with store-extended-info: hop, link, options (the relay's options as
// upper-case hex, in code order) and peer, with commas escaped as "&#x2c".
func AppendKeaRow(dst []byte, ch *Change) []byte {
	b := &ch.Binding
	valid, preferred, state := ch.ValidLifetime, ch.PreferredLifetime, keaStateDefault
	switch ch.Kind {
	case ChangeRelease:
		valid, preferred = 0, 0
	case ChangeExpire:
		state = keaStateReclaimed
	}
	cltt := uint64(b.CLTT.Unix())

	dst = b.Prefix.Addr().AppendTo(dst)
	dst = append(dst, ',')
	dst = appendColonHex(dst, b.ClientID)
	dst = append(dst, ',')
	dst = strconv.AppendUint(dst, uint64(valid), 10)
	dst = append(dst, ',')
	dst = strconv.AppendUint(dst, cltt+uint64(valid), 10)
	dst = append(dst, ',')
	dst = strconv.AppendUint(dst, uint64(ch.SubnetID), 10)
	dst = append(dst, ',')
	dst = strconv.AppendUint(dst, uint64(preferred), 10)
	dst = append(dst, ',')
	dst = strconv.AppendUint(dst, uint64(b.Type), 10) // store.BindingType uses Kea's lease_type numbers
	dst = append(dst, ',')
	dst = strconv.AppendUint(dst, uint64(b.IAID), 10)
	dst = append(dst, ',')
	dst = strconv.AppendInt(dst, int64(b.Prefix.Bits()), 10)
	dst = append(dst, ",0,0,,,"...) // fqdn_fwd, fqdn_rev, hostname, hwaddr
	dst = strconv.AppendInt(dst, int64(state), 10)
	dst = append(dst, ',')
	if len(b.RelayMessage) > 0 {
		dst = appendKeaRelayContext(dst, b)
	}
	return append(dst, ",,\n"...) // hwtype, hwaddr_source
}

// appendKeaRelayContext appends the escaped user_context of a binding
// relayed once.
func appendKeaRelayContext(dst []byte, b *store.Binding) []byte {
	dst = append(dst, `{ "ISC": { "relays": [ { "hop": 0&#x2c "link": "`...)
	dst = b.LinkAddress.AppendTo(dst)
	dst = append(dst, `"&#x2c "options": "0x`...)
	dst = appendUpperHex(dst, b.RelayMessage[relayHeaderEnd:])
	dst = append(dst, `"&#x2c "peer": "`...)
	dst = b.RelayPeer.AppendTo(dst)
	return append(dst, `" } ] } }`...)
}

// relayHeaderEnd is the offset of the options in a Relay-forward.
const relayHeaderEnd = 34

func appendColonHex(dst, b []byte) []byte {
	for i, c := range b {
		if i > 0 {
			dst = append(dst, ':')
		}
		dst = hex.AppendEncode(dst, []byte{c})
	}
	return dst
}

func appendUpperHex(dst, b []byte) []byte {
	const digits = "0123456789ABCDEF"
	for _, c := range b {
		dst = append(dst, digits[c>>4], digits[c&0xf])
	}
	return dst
}

// KeaConfig configures a KeaWriter.
type KeaConfig struct {
	// Path is the live lease file, the "name" of Kea's memfile
	// lease-database. Its directory must exist. Required.
	Path string

	// RotateInterval is how often the live file is rotated and compacted
	// the way Kea's lfc-interval does it. Zero never rotates.
	RotateInterval time.Duration
}

// KeaWriter appends binding changes to a lease file as Kea 2.2's memfile
// backend writes them. It can also rotate the file as Kea's lease file
// cleanup (LFC) does. A follower of Kea's lease file can then be tested and
// benchmarked on generated load.
//
// A rotation does what Kea 2.2 and kea-lfc do: Kea closes the live file,
// renames it to Path.1, opens a new live file with a header and starts
// kea-lfc; kea-lfc writes its PID to Path.pid, merges Path.2 (the previous
// snapshot) and Path.1 into Path.output (the last row of each address;
// addresses whose last row has valid lifetime 0 are dropped; rows in
// address order), renames it to Path.completed, deletes Path.2 and Path.1,
// renames Path.completed to Path.2 and deletes Path.pid. The cleanup runs
// on its own goroutine while rows go on into the new live file. As Kea does,
// a rotation is skipped while Path.1 or Path.completed remains from a
// cleanup that has not finished.
//
// NOTE: Kea flushes each row on its own; a KeaWriter writes the rows of one
// Write call with one write system call, so a reader sees them arrive in
// batches.
//
// Write, Rotate and Close are used by one goroutine at a time; Stats is
// safe for concurrent use.
type KeaWriter struct {
	cfg        KeaConfig
	f          *os.File
	buf        []byte
	lastRotate time.Time
	err        error // sticky: the first failed write or rotation

	rows, writes, rotations, compactions atomic.Uint64

	lfc    sync.WaitGroup
	mu     sync.Mutex
	lfcErr error
}

// NewKeaWriter opens cfg.Path for appending, creating it with a header
// when it does not exist or is empty, as Kea does when it starts.
func NewKeaWriter(cfg KeaConfig) (*KeaWriter, error) {
	if cfg.Path == "" {
		return nil, fmt.Errorf("%w: the Kea lease file path is empty", ErrInvalidConfig)
	}
	if cfg.RotateInterval < 0 {
		return nil, fmt.Errorf("%w: rotate interval %v is negative", ErrInvalidConfig, cfg.RotateInterval)
	}
	w := &KeaWriter{cfg: cfg, lastRotate: time.Now()}
	if err := w.openLive(); err != nil {
		return nil, err
	}
	return w, nil
}

// openLive opens the live file and writes the header if the file is empty.
func (w *KeaWriter) openLive() error {
	f, err := os.OpenFile(w.cfg.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("loadgen: opening the Kea lease file: %w", err)
	}
	st, err := f.Stat()
	if err == nil && st.Size() == 0 {
		_, err = f.Write([]byte(KeaHeader + "\n"))
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("loadgen: writing the header of %s: %w", w.cfg.Path, err)
	}
	w.f = f
	return nil
}

// Write appends the rows of changes, rotating first when RotateInterval
// has passed since the last rotation.
func (w *KeaWriter) Write(_ context.Context, changes []Change) error {
	if w.err != nil {
		return w.err
	}
	if w.cfg.RotateInterval > 0 && time.Since(w.lastRotate) >= w.cfg.RotateInterval {
		if err := w.Rotate(); err != nil {
			return err
		}
	}
	w.buf = w.buf[:0]
	for i := range changes {
		w.buf = AppendKeaRow(w.buf, &changes[i])
	}
	if _, err := w.f.Write(w.buf); err != nil {
		w.err = fmt.Errorf("loadgen: appending to %s: %w", w.cfg.Path, err)
		return w.err
	}
	w.rows.Add(uint64(len(changes)))
	w.writes.Add(1)
	return nil
}

// Rotate renames the live file to Path.1, starts a new live file and
// starts the cleanup, unless an earlier cleanup has left Path.1 or
// Path.completed behind.
func (w *KeaWriter) Rotate() error {
	if w.err != nil {
		return w.err
	}
	w.lastRotate = time.Now()
	for _, suffix := range []string{".1", ".completed"} {
		if _, err := os.Stat(w.cfg.Path + suffix); err == nil {
			return nil // Kea skips the rotation too
		}
	}

	err := w.f.Close()
	w.f = nil
	if err != nil {
		w.err = fmt.Errorf("loadgen: closing %s before rotation: %w", w.cfg.Path, err)
		return w.err
	}
	if err := os.Rename(w.cfg.Path, w.cfg.Path+".1"); err != nil {
		w.err = fmt.Errorf("loadgen: rotating %s: %w", w.cfg.Path, err)
		return w.err
	}
	if err := w.openLive(); err != nil {
		w.err = err
		return err
	}
	w.rotations.Add(1)

	w.lfc.Add(1)
	go func() {
		defer w.lfc.Done()
		if err := compactKeaFiles(w.cfg.Path); err != nil {
			w.mu.Lock()
			if w.lfcErr == nil {
				w.lfcErr = err
			}
			w.mu.Unlock()
			return
		}
		w.compactions.Add(1)
	}()
	return nil
}

// Close closes the live file and waits for a running cleanup. It returns
// the first error of a write, a rotation or a cleanup.
func (w *KeaWriter) Close() error {
	var err error
	if w.f != nil {
		err = w.f.Close()
		w.f = nil
	}
	w.lfc.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return errors.Join(w.err, err, w.lfcErr)
}

// Stats returns the writer's counters.
func (w *KeaWriter) Stats() SinkStats {
	s := SinkStats{
		Requests:    w.writes.Load(),
		Rows:        w.rows.Load(),
		Rotations:   w.rotations.Load(),
		Compactions: w.compactions.Load(),
	}
	w.mu.Lock()
	if w.lfcErr != nil {
		s.Errors, s.FirstError = 1, w.lfcErr.Error()
	}
	w.mu.Unlock()
	return s
}

// compactKeaFiles runs the steps of kea-lfc on path.2 and path.1.
func compactKeaFiles(path string) error {
	if err := os.WriteFile(path+".pid", []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("loadgen: lease file cleanup: %w", err)
	}
	rows, err := loadKeaLeases(path+".2", path+".1")
	if err == nil {
		err = writeKeaSnapshot(path+".output", rows)
	}
	steps := []func() error{
		func() error { return os.Rename(path+".output", path+".completed") },
		func() error { return removeIfExists(path + ".2") },
		func() error { return os.Remove(path + ".1") },
		func() error { return os.Rename(path+".completed", path+".2") },
	}
	for _, step := range steps {
		if err != nil {
			break
		}
		err = step()
	}
	if rmErr := os.Remove(path + ".pid"); err == nil {
		err = rmErr
	}
	if err != nil {
		return fmt.Errorf("loadgen: lease file cleanup of %s: %w", path, err)
	}
	return nil
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
