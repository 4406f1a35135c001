package loadgen

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// keaLease is the last row read for one address.
type keaLease struct {
	addr netip.Addr
	row  string
}

// loadKeaLeases reads lease files in order, as kea-lfc loads them, and
// returns the last row of every address whose last row does not have
// valid lifetime 0 (Kea's mark for a removed lease), in address order.
// Missing files are skipped.
func loadKeaLeases(paths ...string) ([]keaLease, error) {
	leases := make(map[netip.Addr]string)
	for _, path := range paths {
		if err := loadKeaFile(path, leases); err != nil {
			return nil, err
		}
	}
	out := make([]keaLease, 0, len(leases))
	for addr, row := range leases {
		out = append(out, keaLease{addr, row})
	}
	slices.SortFunc(out, func(a, b keaLease) int { return a.addr.Compare(b.addr) })
	return out, nil
}

func loadKeaFile(path string, leases map[netip.Addr]string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()

	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	addrCol, validCol := -1, -1
	for line := 1; sc.Scan(); line++ {
		fields := strings.Split(sc.Text(), ",")
		if line == 1 {
			addrCol, validCol = slices.Index(fields, "address"), slices.Index(fields, "valid_lifetime")
			if addrCol < 0 || validCol < 0 {
				return fmt.Errorf("%s: the header has no address or valid_lifetime column", path)
			}
			continue
		}
		if len(fields) <= max(addrCol, validCol) {
			return fmt.Errorf("%s line %d: %d columns, too few", path, line, len(fields))
		}
		addr, err := netip.ParseAddr(fields[addrCol])
		if err != nil {
			return fmt.Errorf("%s line %d: address %q: %w", path, line, fields[addrCol], err)
		}
		if fields[validCol] == "0" {
			delete(leases, addr)
		} else {
			leases[addr] = sc.Text()
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	return nil
}

// writeKeaSnapshot writes a lease file holding rows.
func writeKeaSnapshot(path string, rows []keaLease) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 256<<10)
	w.WriteString(KeaHeader + "\n")
	for _, l := range rows {
		w.WriteString(l.row)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
