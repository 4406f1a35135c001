package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/alqd/alqd/requestor"
)

// stateFile is the resume point of "alq watch --state", as JSON:
//
//	{"server": "[2001:db8::53]:547", "start_time": 820540800}
//
// start_time is absent until the first checkpoint. The file names the
// server because a start time is a time in that server's clock.
type stateFile struct {
	path   string
	Server string  `json:"server"`
	Start  *uint32 `json:"start_time,omitempty"`
}

// loadState reads the state file, or starts a new one when it does not
// exist. It refuses a file written for another server.
func loadState(path, server string) (*stateFile, error) {
	addr, err := requestor.ServerAddress(server)
	if err != nil {
		return nil, err
	}
	s := &stateFile{path: path, Server: addr}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, usagef("--state: %v", err)
	}
	var stored stateFile
	if err := json.Unmarshal(data, &stored); err != nil {
		return nil, usagef("--state %s is not a state file written by alq watch: %v", path, err)
	}
	if stored.Server != addr {
		return nil, usagef("--state %s belongs to server %s, not %s; its start time is in that server's clock, so use another file", path, stored.Server, addr)
	}
	s.Start = stored.Start
	return s, nil
}

// checkpoint returns the stored resume point.
func (s *stateFile) checkpoint() requestor.Checkpoint {
	if s.Start == nil {
		return requestor.Checkpoint{}
	}
	return requestor.Checkpoint{StartTime: *s.Start, Valid: true}
}

// save writes c when it differs from what the file holds, atomically: a
// new file renamed over the old one.
func (s *stateFile) save(c requestor.Checkpoint) error {
	if !c.Valid || s.Start != nil && *s.Start == c.StartTime {
		return nil
	}
	start := c.StartTime
	s.Start = &start
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), filepath.Base(s.path)+".*")
	if err != nil {
		return fmt.Errorf("saving the watch state: %w", err)
	}
	_, err = tmp.Write(append(data, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("saving the watch state to %s: %w", s.path, err)
	}
	return nil
}
