package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/alqd/alqd/store"
)

// Exit codes of the store subcommands (verify, backup, restore).
const (
	exitOK      = 0 // success; for verify, a consistent store
	exitFailure = 1 // verify found inconsistencies, or the backup or restore failed
	exitUsage   = 2 // invalid command line, a store that does not open or is in use, or a restore target that is not empty
)

// storeCommand returns the function of subcommand name, or nil when name
// is not verify, backup or restore.
func storeCommand(name string) func(ctx context.Context, args []string, stdio toolIO) int {
	switch name {
	case "verify":
		return runVerify
	case "backup":
		return runBackup
	case "restore":
		return runRestore
	}
	return nil
}

// toolIO is the standard streams of a subcommand, replaced in tests.
type toolIO struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// toolFlags parses the flags of subcommand name and returns the data
// directory. It reports an exit code and false when the command should
// stop: after -h, or on an invalid command line.
func toolFlags(name string, args []string, stdio toolIO, define func(*flag.FlagSet)) (string, int, bool) {
	fs := flag.NewFlagSet("alqd "+name, flag.ContinueOnError)
	fs.SetOutput(stdio.stderr)
	var dataDir string
	fs.StringVar(&dataDir, "data-dir", "", "`directory` of the binding store (required)")
	define(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", exitOK, false
		}
		return "", exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stdio.stderr, "alqd %s: unexpected argument %q; every setting is a flag\n", name, fs.Arg(0))
		return "", exitUsage, false
	}
	if dataDir == "" {
		fmt.Fprintf(stdio.stderr, "alqd %s: --data-dir is required: the directory of the binding store\n", name)
		return "", exitUsage, false
	}
	return dataDir, exitOK, true
}

// openExisting opens the store in dir for a subcommand. Unlike store.Open
// it fails when dir holds no store, so that verify and backup never create
// one, and it names the usual cause of a locked directory.
func openExisting(dir string, stderr io.Writer) (*store.Store, error) {
	if _, err := os.Stat(filepath.Join(dir, "LOCK")); err != nil {
		return nil, fmt.Errorf("no store in %s: %w; --data-dir must name the directory alqd was started with", dir, err)
	}
	st, err := store.Open(dir, store.Options{
		TrimInterval: -1, // a subcommand never changes the store
		Logger:       slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
		return nil, fmt.Errorf("the store in %s is locked by another process, usually a running alqd; stop it first, or take an online backup with GET /backup (--backup-endpoint): %w", dir, err)
	}
	if err != nil {
		return nil, err
	}
	return st, nil
}

// closeStore closes st and reports a failure on stderr. The subcommand has
// only read the store, so its result is still valid.
func closeStore(st *store.Store, command string, stderr io.Writer) {
	if err := st.Close(); err != nil {
		fmt.Fprintf(stderr, "alqd %s: %v\n", command, err)
	}
}

// runVerify runs "alqd verify": Store.Verify on an offline store.
func runVerify(_ context.Context, args []string, stdio toolIO) int {
	var asJSON bool
	dir, code, ok := toolFlags("verify", args, stdio, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	})
	if !ok {
		return code
	}
	st, err := openExisting(dir, stdio.stderr)
	if err != nil {
		fmt.Fprintln(stdio.stderr, "alqd verify:", err)
		return exitUsage
	}
	defer closeStore(st, "verify", stdio.stderr)

	began := time.Now()
	report := verifyReport{DataDir: dir, ServerDUID: hex.EncodeToString(st.ServerDUID()), LastSeq: st.LastSeq()}
	report.Floor, report.FloorSeq = st.Floor()
	verr := st.Verify()
	var inconsistent *store.InconsistencyError
	switch {
	case errors.As(verr, &inconsistent):
		report.Problems = make([]string, len(inconsistent.Problems))
		for i, p := range inconsistent.Problems {
			report.Problems[i] = p.Error()
		}
		report.TotalProblems = inconsistent.Total
	case verr != nil:
		fmt.Fprintln(stdio.stderr, "alqd verify: verify failed:", verr)
		return exitFailure
	}
	if err := countBindings(st, &report); err != nil && verr == nil {
		fmt.Fprintln(stdio.stderr, "alqd verify: counting the bindings failed:", err)
		return exitFailure
	}
	report.Consistent = report.TotalProblems == 0
	report.Seconds = time.Since(began).Seconds()

	if asJSON {
		enc := json.NewEncoder(stdio.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(report)
	} else {
		report.print(stdio.stdout)
	}
	if !report.Consistent {
		return exitFailure
	}
	return exitOK
}

// verifyReport is the output of "alqd verify".
type verifyReport struct {
	DataDir       string    `json:"data_dir"`
	Consistent    bool      `json:"consistent"`
	Bindings      int       `json:"bindings"`
	Ended         int       `json:"released_or_expired"`
	LastSeq       uint64    `json:"last_seq"`
	Floor         time.Time `json:"floor,omitzero"`
	FloorSeq      uint64    `json:"floor_seq"`
	ServerDUID    string    `json:"server_duid"`
	TotalProblems int       `json:"total_problems"`
	Problems      []string  `json:"problems,omitempty"`
	Seconds       float64   `json:"seconds"`
}

func (r *verifyReport) print(w io.Writer) {
	floor := "none"
	if !r.Floor.IsZero() {
		floor = fmt.Sprintf("%s (seq %d)", r.Floor.Format(time.RFC3339), r.FloorSeq)
	}
	if !r.Consistent {
		fmt.Fprintf(w, "store %s is inconsistent: %d problems\n", r.DataDir, r.TotalProblems)
		for _, p := range r.Problems {
			fmt.Fprintf(w, "\t%s\n", p)
		}
		if r.TotalProblems > len(r.Problems) {
			fmt.Fprintf(w, "\t... and %d more\n", r.TotalProblems-len(r.Problems))
		}
		fmt.Fprintln(w, "restore the store from a backup (alqd restore) or rebuild it from the lease source")
		return
	}
	fmt.Fprintf(w, "store %s is consistent: %d bindings (%d released or expired), last seq %d, history floor %s, server DUID %s, checked in %.1fs\n",
		r.DataDir, r.Bindings, r.Ended, r.LastSeq, floor, r.ServerDUID, r.Seconds)
}

// countBindings counts the bindings of st into r.
func countBindings(st *store.Store, r *verifyReport) error {
	it := st.All()
	for it.Next() {
		r.Bindings++
		if it.Binding().State.Ended() {
			r.Ended++
		}
	}
	return it.Close()
}

// backupSummary is the summary line of "alqd backup" and "alqd restore",
// and the log attributes of an online backup.
type backupSummary struct {
	File        string    `json:"file"`
	DataDir     string    `json:"data_dir"`
	Bindings    uint64    `json:"bindings"`
	Records     uint64    `json:"records"`
	LastSeq     uint64    `json:"last_seq"`
	Created     time.Time `json:"created"`
	RawBytes    int64     `json:"raw_bytes"`
	StreamBytes int64     `json:"stream_bytes"`
	Ratio       float64   `json:"ratio"`
	Floor       time.Time `json:"restored_floor,omitzero"`
	FloorSeq    uint64    `json:"restored_floor_seq,omitempty"`
	Seconds     float64   `json:"seconds"`
}

func newBackupSummary(file, dir string, info *store.BackupInfo, took time.Duration) backupSummary {
	return backupSummary{
		File: file, DataDir: dir,
		Bindings: info.Bindings, Records: info.Records, LastSeq: info.LastSeq, Created: info.Created,
		RawBytes: info.RawBytes, StreamBytes: info.StreamBytes, Ratio: info.Ratio(),
		Floor: info.RestoredFloor, FloorSeq: info.RestoredFloorSeq,
		Seconds: took.Seconds(),
	}
}

// write prints the summary of command (backup or restore) as one line or
// as JSON.
func (s *backupSummary) write(w io.Writer, command string, asJSON bool) {
	if asJSON {
		_ = json.NewEncoder(w).Encode(s)
		return
	}
	switch command {
	case "backup":
		fmt.Fprintf(w, "alqd backup: %d bindings, %d records up to seq %d from %s written to %s: %d bytes, %.3f of %d raw bytes, in %.1fs\n",
			s.Bindings, s.Records, s.LastSeq, s.DataDir, s.File, s.StreamBytes, s.Ratio, s.RawBytes, s.Seconds)
	case "restore":
		fmt.Fprintf(w, "alqd restore: %d bindings, %d records up to seq %d, backed up at %s, restored from %s into %s in %.1fs; history floor raised to %s (seq %d)\n",
			s.Bindings, s.Records, s.LastSeq, s.Created.Format(time.RFC3339), s.File, s.DataDir, s.Seconds, s.Floor.Format(time.RFC3339), s.FloorSeq)
	}
}

// runBackup runs "alqd backup": a backup of an offline store to a file or
// standard output.
func runBackup(ctx context.Context, args []string, stdio toolIO) int {
	var out string
	var asJSON bool
	dir, code, ok := toolFlags("backup", args, stdio, func(fs *flag.FlagSet) {
		fs.StringVar(&out, "out", "", "backup `file` to write (required); - writes to standard output. The file is written as FILE.tmp and renamed when complete, replacing FILE; an existing FIFO or device is written directly")
		fs.BoolVar(&asJSON, "json", false, "print the summary on standard error as one JSON object")
	})
	if !ok {
		return code
	}
	if out == "" {
		fmt.Fprintln(stdio.stderr, "alqd backup: --out is required: the backup file, or - for standard output")
		return exitUsage
	}
	st, err := openExisting(dir, stdio.stderr)
	if err != nil {
		fmt.Fprintln(stdio.stderr, "alqd backup:", err)
		return exitUsage
	}
	defer closeStore(st, "backup", stdio.stderr)

	began := time.Now()
	var info store.BackupInfo
	if out == "-" {
		info, err = st.Backup(ctx, stdio.stdout)
	} else {
		info, err = backupToFile(ctx, st, out)
	}
	if err != nil {
		fmt.Fprintln(stdio.stderr, "alqd backup:", err)
		return exitFailure
	}
	summary := newBackupSummary(out, dir, &info, time.Since(began))
	summary.write(stdio.stderr, "backup", asJSON)
	return exitOK
}

// backupToFile writes a backup of st to path.tmp, syncs it and renames it
// to path. On error it removes path.tmp. A path that exists and is neither
// a regular file nor a directory, such as a FIFO or /dev/null, is written
// directly: a rename would replace it.
func backupToFile(ctx context.Context, st *store.Store, path string) (info store.BackupInfo, err error) {
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() && !fi.IsDir() {
		return backupToSpecialFile(ctx, st, path)
	}

	// The backup contains client DUIDs and relay data, so only its owner
	// may read it.
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return info, fmt.Errorf("creating the backup file: %w", err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if info, err = st.Backup(ctx, f); err != nil {
		return info, err
	}

	// Durable before it replaces an older backup.
	if err = f.Sync(); err != nil {
		return info, fmt.Errorf("syncing %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return info, fmt.Errorf("closing %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return info, fmt.Errorf("renaming %s to %s: %w", tmp, path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return info, fmt.Errorf("%s is written but its directory did not sync: %w", path, err)
	}
	return info, nil
}

// backupToSpecialFile writes a backup of st into the existing FIFO or
// device path. The open does not block, so a FIFO that no process reads
// fails at once instead of waiting where no signal ends the wait.
func backupToSpecialFile(ctx context.Context, st *store.Store, path string) (info store.BackupInfo, err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ENXIO) {
		return info, fmt.Errorf("%s is a FIFO that no process reads; start its reader first, or use --out - with a shell pipe", path)
	}
	if err != nil {
		return info, fmt.Errorf("opening the backup output: %w", err)
	}
	info, err = st.Backup(ctx, f)
	if closeErr := f.Close(); closeErr != nil && err == nil {
		err = fmt.Errorf("closing %s: %w", path, closeErr)
	}
	return info, err
}

// syncDir fsyncs directory dir, so that a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// runRestore runs "alqd restore": a new store from a backup file or
// standard input.
func runRestore(ctx context.Context, args []string, stdio toolIO) int {
	var in string
	var asJSON bool
	dir, code, ok := toolFlags("restore", args, stdio, func(fs *flag.FlagSet) {
		fs.StringVar(&in, "in", "", "backup `file` to read (required); - reads standard input")
		fs.BoolVar(&asJSON, "json", false, "print the summary on standard error as one JSON object")
	})
	if !ok {
		return code
	}
	if in == "" {
		fmt.Fprintln(stdio.stderr, "alqd restore: --in is required: the backup file, or - for standard input")
		return exitUsage
	}
	r := stdio.stdin
	if in != "-" {
		f, err := os.Open(in)
		if err != nil {
			fmt.Fprintln(stdio.stderr, "alqd restore:", err)
			return exitUsage
		}
		defer f.Close()
		r = f
	}

	began := time.Now()
	info, err := store.Restore(ctx, dir, r, store.Options{
		Logger: slog.New(slog.NewTextHandler(stdio.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if errors.Is(err, store.ErrTargetNotEmpty) {
		fmt.Fprintln(stdio.stderr, "alqd restore:", err)
		return exitUsage
	}
	if err != nil {
		fmt.Fprintln(stdio.stderr, "alqd restore:", err)
		return exitFailure
	}
	summary := newBackupSummary(in, dir, &info, time.Since(began))
	summary.write(stdio.stderr, "restore", asJSON)
	return exitOK
}
