package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alqd/alqd/codec"
	"github.com/alqd/alqd/requestor"
	"github.com/alqd/alqd/requestor/mirror"
)

// printer writes events to stdout as JSON lines, as a table (bulk and
// query), or as one line per event (watch and mirror).
type printer struct {
	out    *bufio.Writer
	json   bool
	stream bool // one line per event instead of a table
	table  *tabwriter.Writer
	rows   int
	enc    *json.Encoder
}

// tableFlushRows bounds how many rows the table buffers before it aligns
// and writes them, so that memory stays flat on a large bulk answer.
const tableFlushRows = 1000

func newPrinter(w io.Writer, asJSON, stream bool) *printer {
	p := &printer{out: bufio.NewWriter(w), json: asJSON, stream: stream}
	if asJSON {
		p.enc = json.NewEncoder(p.out)
		p.enc.SetEscapeHTML(false)
	}
	return p
}

// close writes what is buffered.
func (p *printer) close() error {
	if p.table != nil {
		p.table.Flush()
	}
	return p.out.Flush()
}

// event prints one event. Table mode prints bindings only; the caller
// reports the outcome on stderr.
func (p *printer) event(ev requestor.Event) error {
	if p.json {
		if err := p.enc.Encode(jsonEvent(ev)); err != nil {
			return err
		}
		if p.stream {
			return p.out.Flush()
		}
		return nil
	}
	if p.stream {
		if _, err := fmt.Fprintln(p.out, eventLine(ev)); err != nil {
			return err
		}
		return p.out.Flush()
	}
	b, ok := ev.(requestor.Binding)
	if !ok {
		return nil
	}
	if p.table == nil {
		p.table = tabwriter.NewWriter(p.out, 2, 8, 2, ' ', 0)
		fmt.Fprintln(p.table, "TYPE\tADDRESS/PREFIX\tCLIENT-ID\tIAID\tSTATE\tPREFERRED\tVALID\tVALID-UNTIL\tLAST-TRANSACTION\tLINK\tRELAY-ID\tREMOTE-ID")
	}
	fmt.Fprintln(p.table, strings.Join(bindingColumns(&b), "\t"))
	if p.rows++; p.rows%tableFlushRows == 0 {
		return p.table.Flush()
	}
	return nil
}

// bindingColumns returns the table cells of a binding.
func bindingColumns(b *requestor.Binding) []string {
	iaid := "-"
	if b.HasIAID {
		iaid = strconv.FormatUint(uint64(b.IAID), 10)
	}
	remote := "-"
	if b.HasRemoteID {
		remote = strconv.FormatUint(uint64(b.RemoteID.EnterpriseNumber), 10) + ":" + hex.EncodeToString(b.RemoteID.ID)
	}
	return []string{
		b.Type.String(), bindingTarget(b), hex.EncodeToString(b.ClientID), iaid, b.State.String(),
		lifetime(b.PreferredLifetime), lifetime(b.ValidLifetime), clock(b.ValidUntil), clock(b.LastTransaction),
		addrOrDash(b.LinkAddress.String(), b.LinkAddress.IsValid()), hexOrDash(b.RelayID), remote,
	}
}

func bindingTarget(b *requestor.Binding) string {
	if b.Type == requestor.TypePD {
		return b.Prefix.String()
	}
	return b.Addr.String()
}

func lifetime(v uint32) string {
	if v == requestor.Infinity {
		return "infinite"
	}
	return strconv.FormatUint(uint64(v), 10)
}

func clock(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.RFC3339)
}

func addrOrDash(s string, ok bool) string {
	if !ok {
		return "-"
	}
	return s
}

func hexOrDash(b []byte) string {
	if len(b) == 0 {
		return "-"
	}
	return hex.EncodeToString(b)
}

// eventLine formats an event as one line of text.
func eventLine(ev requestor.Event) string {
	now := time.Now().Local().Format(time.RFC3339)
	switch e := ev.(type) {
	case requestor.Binding:
		s := fmt.Sprintf("%s %-8s %s %s client %s %s valid %s", now, e.Source, e.Type, bindingTarget(&e), hex.EncodeToString(e.ClientID), e.State, lifetime(e.ValidLifetime))
		if !e.ValidUntil.IsZero() {
			s += " until " + clock(e.ValidUntil)
		}
		if e.LinkAddress.IsValid() {
			s += " link " + e.LinkAddress.String()
		}
		if e.CatchUp {
			s += " (catch-up)"
		}
		return s
	case requestor.Accepted:
		return fmt.Sprintf("%s accepted: server time %s", now, serverClock(e.MessageInfo))
	case requestor.CatchUpComplete:
		return fmt.Sprintf("%s catch-up complete at server time %s", now, serverClock(e.MessageInfo))
	case requestor.DataMissing:
		s := fmt.Sprintf("%s data missing: the server has no history from %d to %d", now, e.StartTime, e.BaseTime)
		if e.Recovery {
			return s + "; recovering with a bulk query"
		}
		return s + "; no bulk query to recover with (give --bulk-link or a filter)"
	case requestor.Keepalive:
		return fmt.Sprintf("%s keepalive at server time %s", now, serverClock(e.MessageInfo))
	case requestor.Done:
		return fmt.Sprintf("%s done: %s, %s", now, statusText(e.Status, e.StatusMessage), bindingCount(e.Bindings))
	case requestor.Connected:
		if e.HasStartTime {
			return fmt.Sprintf("%s connected to %s (attempt %d), catching up from %d", now, e.Server, e.Attempt, e.StartTime)
		}
		return fmt.Sprintf("%s connected to %s (attempt %d), live changes only", now, e.Server, e.Attempt)
	case requestor.Disconnected:
		if e.RetryAt.IsZero() {
			return fmt.Sprintf("%s disconnected: %v", now, e.Err)
		}
		return fmt.Sprintf("%s disconnected: %v; retrying at %s", now, e.Err, clock(e.RetryAt))
	case requestor.RecoveryStarted:
		if e.Source == requestor.SourceInitial {
			return fmt.Sprintf("%s initial bulk query started", now)
		}
		if e.Full {
			return fmt.Sprintf("%s recovery bulk query started for %d to %d and for every binding held", now, e.StartTime, e.EndTime)
		}
		return fmt.Sprintf("%s recovery bulk query started for %d to %d", now, e.StartTime, e.EndTime)
	case mirror.Swept:
		return fmt.Sprintf("%s %s bulk query complete: %s the server no longer has marked ended", now, e.Source, bindingCount(e.Ended))
	case requestor.RecoveryDone:
		if e.Err != nil {
			return fmt.Sprintf("%s %s bulk query failed after %s: %v", now, e.Source, bindingCount(e.Bindings), e.Err)
		}
		return fmt.Sprintf("%s %s bulk query done: %s", now, e.Source, bindingCount(e.Bindings))
	}
	return fmt.Sprintf("%s %T", now, ev)
}

func serverClock(m requestor.MessageInfo) string {
	if !m.HasBaseTime {
		return "unknown"
	}
	return strconv.FormatUint(uint64(m.BaseTime), 10) + " (" + m.ServerTime().Format(time.RFC3339) + ")"
}

func statusText(code codec.StatusCode, msg string) string {
	if msg == "" {
		return code.String()
	}
	return code.String() + " (" + msg + ")"
}

// jsonBinding is the JSON form of a Binding event; docs/ALQ.md documents
// every field.
type jsonBinding struct {
	Event             string       `json:"event"`
	Source            string       `json:"source"`
	Query             int          `json:"query"`
	TransactionID     uint32       `json:"xid"`
	Type              string       `json:"type"`
	Address           string       `json:"address,omitempty"`
	Prefix            string       `json:"prefix,omitempty"`
	ClientID          string       `json:"client_id"`
	IAID              *uint32      `json:"iaid,omitempty"`
	State             string       `json:"state"`
	PreferredLifetime uint32       `json:"preferred_lifetime"`
	ValidLifetime     uint32       `json:"valid_lifetime"`
	PreferredUntil    *time.Time   `json:"preferred_until"`
	ValidUntil        *time.Time   `json:"valid_until"`
	CLTTime           *uint32      `json:"clt_time,omitempty"`
	LastTransaction   *time.Time   `json:"last_transaction,omitempty"`
	BaseTime          *uint32      `json:"base_time,omitempty"`
	ServerTime        *time.Time   `json:"server_time,omitempty"`
	Received          time.Time    `json:"received"`
	CatchUp           bool         `json:"catch_up"`
	LinkAddress       string       `json:"link_address,omitempty"`
	RelayID           string       `json:"relay_id,omitempty"`
	RemoteID          *jsonRemote  `json:"remote_id,omitempty"`
	InterfaceID       string       `json:"interface_id,omitempty"`
	RelayPeer         string       `json:"relay_peer,omitempty"`
	RelayMessage      string       `json:"relay_message,omitempty"`
	Options           []jsonOption `json:"options,omitempty"`
}

type jsonRemote struct {
	Enterprise uint32 `json:"enterprise"`
	ID         string `json:"id"`
}

type jsonOption struct {
	Code uint16 `json:"code"`
	Data string `json:"data"`
}

// jsonStatus is the JSON form of every event but Binding; fields that do
// not apply to the event are left out.
type jsonStatus struct {
	Event      string     `json:"event"`
	Source     string     `json:"source,omitempty"`
	Query      *int       `json:"query,omitempty"`
	Status     string     `json:"status,omitempty"`
	StatusCode *uint16    `json:"status_code,omitempty"`
	Message    string     `json:"message,omitempty"`
	Bindings   *int       `json:"bindings,omitempty"`
	Full       *bool      `json:"full,omitempty"`
	Ended      *int       `json:"ended,omitempty"`
	BaseTime   *uint32    `json:"base_time,omitempty"`
	ServerTime *time.Time `json:"server_time,omitempty"`
	StartTime  *uint32    `json:"start_time,omitempty"`
	EndTime    *uint32    `json:"end_time,omitempty"`
	Recovery   *bool      `json:"recovery,omitempty"`
	ServerID   string     `json:"server_id,omitempty"`
	Server     string     `json:"server,omitempty"`
	Attempt    int        `json:"attempt,omitempty"`
	Error      string     `json:"error,omitempty"`
	RetryAt    *time.Time `json:"retry_at,omitempty"`
}

func ptr[T any](v T) *T { return &v }

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// jsonEvent returns the JSON form of an event.
func jsonEvent(ev requestor.Event) any {
	if b, ok := ev.(requestor.Binding); ok {
		return jsonBindingOf(&b)
	}
	s := jsonStatus{}
	setInfo := func(m requestor.MessageInfo) {
		s.Source = m.Source.String()
		if m.HasBaseTime {
			s.BaseTime, s.ServerTime = ptr(m.BaseTime), ptr(m.ServerTime())
		}
	}
	switch e := ev.(type) {
	case requestor.Accepted:
		s.Event = "accepted"
		setInfo(e.MessageInfo)
		s.ServerID = hex.EncodeToString(e.ServerID)
	case requestor.CatchUpComplete:
		s.Event = "catch_up_complete"
		setInfo(e.MessageInfo)
	case requestor.DataMissing:
		s.Event = "data_missing"
		setInfo(e.MessageInfo)
		s.StartTime, s.Recovery, s.Message = ptr(e.StartTime), ptr(e.Recovery), e.StatusMessage
	case requestor.Keepalive:
		s.Event = "keepalive"
		setInfo(e.MessageInfo)
		if e.HasStatus {
			s.Status, s.StatusCode, s.Message = e.Status.String(), ptr(uint16(e.Status)), e.StatusMessage
		}
	case requestor.Done:
		s.Event = "done"
		setInfo(e.MessageInfo)
		s.Query = ptr(e.Query)
		s.Status, s.StatusCode, s.Message, s.Bindings = e.Status.String(), ptr(uint16(e.Status)), e.StatusMessage, ptr(e.Bindings)
	case requestor.Connected:
		s.Event, s.Server, s.Attempt = "connected", e.Server, e.Attempt
		if e.HasStartTime {
			s.StartTime = ptr(e.StartTime)
		}
	case requestor.Disconnected:
		s.Event, s.RetryAt = "disconnected", timePtr(e.RetryAt)
		if e.Err != nil {
			s.Error = e.Err.Error()
		}
	case requestor.RecoveryStarted:
		s.Event, s.Source, s.Full = "recovery_started", e.Source.String(), ptr(e.Full)
		if e.HasStartTime {
			s.StartTime = ptr(e.StartTime)
		}
		if e.HasEndTime {
			s.EndTime = ptr(e.EndTime)
		}
	case requestor.RecoveryDone:
		s.Event, s.Source, s.Bindings, s.Full = "recovery_done", e.Source.String(), ptr(e.Bindings), ptr(e.Full)
		if e.Err != nil {
			s.Error = e.Err.Error()
		}
	case mirror.Swept:
		s.Event, s.Source, s.Ended = "swept", e.Source.String(), ptr(e.Ended)
	default:
		s.Event = fmt.Sprintf("%T", ev)
	}
	return s
}

func jsonBindingOf(b *requestor.Binding) jsonBinding {
	j := jsonBinding{
		Event: "binding", Source: b.Source.String(), Query: b.Query, TransactionID: b.TransactionID,
		Type: b.Type.String(), ClientID: hex.EncodeToString(b.ClientID), State: b.State.String(),
		PreferredLifetime: b.PreferredLifetime, ValidLifetime: b.ValidLifetime,
		PreferredUntil: timePtr(b.PreferredUntil), ValidUntil: timePtr(b.ValidUntil),
		Received: b.Received, CatchUp: b.CatchUp,
		RelayID: hex.EncodeToString(b.RelayID), InterfaceID: hex.EncodeToString(b.InterfaceID),
		RelayMessage: hex.EncodeToString(b.RelayMessage),
	}
	if b.Type == requestor.TypePD {
		j.Prefix = b.Prefix.String()
	} else {
		j.Address = b.Addr.String()
	}
	if b.HasIAID {
		j.IAID = ptr(b.IAID)
	}
	if b.HasCLTTime {
		j.CLTTime, j.LastTransaction = ptr(b.CLTTime), ptr(b.LastTransaction)
	}
	if b.HasBaseTime {
		j.BaseTime, j.ServerTime = ptr(b.BaseTime), ptr(b.ServerTime())
	}
	if b.LinkAddress.IsValid() {
		j.LinkAddress = b.LinkAddress.String()
	}
	if b.RelayPeer.IsValid() {
		j.RelayPeer = b.RelayPeer.String()
	}
	if b.HasRemoteID {
		j.RemoteID = &jsonRemote{Enterprise: b.RemoteID.EnterpriseNumber, ID: hex.EncodeToString(b.RemoteID.ID)}
	}
	for _, o := range b.Options {
		j.Options = append(j.Options, jsonOption{Code: uint16(o.Code), Data: hex.EncodeToString(o.Data)})
	}
	return j
}

// bindingCount returns "1 binding" or "n bindings".
func bindingCount(n int) string {
	if n == 1 {
		return "1 binding"
	}
	return strconv.Itoa(n) + " bindings"
}
