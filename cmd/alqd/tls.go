package main

import (
	"context"
	"log/slog"
	"os"
	"strings"

	"github.com/alqd/alqd/server"
)

// certPatternList is a repeatable, comma-separated list of certificate
// allow-list entries (server.ParseCertPattern).
type certPatternList struct{ list *[]server.CertPattern }

func (c certPatternList) String() string {
	if c.list == nil {
		return ""
	}
	parts := make([]string, len(*c.list))
	for i, p := range *c.list {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

func (c certPatternList) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, err := server.ParseCertPattern(part)
		if err != nil {
			return err
		}
		*c.list = append(*c.list, p)
	}
	return nil
}

// reloadOnSignal calls reload for every value on sig until ctx ends. alqd
// sends SIGHUP here, so that a renewed certificate, key or client CA file
// takes effect without dropping a connection. A failed reload keeps the
// files in force and is logged; the operator fixes the files and sends
// SIGHUP again.
func reloadOnSignal(ctx context.Context, sig <-chan os.Signal, reload func() error, tlsOn bool, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-sig:
		}
		if !tlsOn {
			log.Info("SIGHUP received; nothing to reload without TLS")
			continue
		}
		if err := reload(); err != nil {
			log.Error("reloading the TLS files failed; the previous certificate, key and client CA stay in force", "err", err)
		}
	}
}
