package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alqd/alqd/store"
)

const (
	recordNA = `{"type":"na","address":"2001:db8:2::1000","client_id":"0001000132a5cf38000c02000001","iaid":1,"preferred_lifetime":20,"valid_lifetime":30,"state":"active","cltt":"2026-12-04T19:21:29Z"}`
	recordPD = `{"type":"pd","prefix":"2001:db8:9000::/56","client_id":"00:01:00:01:32:a5:cf:38:00:0c:02:00:00:01","iaid":1,"preferred_lifetime":20,"valid_lifetime":30,"state":"active","cltt":"2026-12-04T20:21:29+01:00","link_address":"2001:db8:2::1","relay_id":"0003000102aabbccdd01","remote_id":"00000de97375622d303030303031","interface_id":"766574682d636c692e313030","relay_peer":"2001:db8:1::2","relay_message":"0c0020010db800020000000000000000000120010db8000100000000000000000002"}`
)

func TestDecodeRecordValid(t *testing.T) {
	cltt := time.Date(2026, 12, 4, 19, 21, 29, 0, time.UTC)
	tests := []struct {
		name string
		line string
		want store.Binding
	}{
		{"IA_NA", recordNA, store.Binding{
			Key:      store.Key{Type: store.TypeNA, Prefix: netip.MustParsePrefix("2001:db8:2::1000/128")},
			ClientID: mustHex(t, "0001000132a5cf38000c02000001"), IAID: 1,
			PreferredLifetime: 20, ValidLifetime: 30, State: store.StateActive, CLTT: cltt,
		}},
		{"IA_PD relayed", recordPD, store.Binding{
			Key:      store.Key{Type: store.TypePD, Prefix: netip.MustParsePrefix("2001:db8:9000::/56")},
			ClientID: mustHex(t, "0001000132a5cf38000c02000001"), IAID: 1,
			PreferredLifetime: 20, ValidLifetime: 30, State: store.StateActive, CLTT: cltt,
			LinkAddress: netip.MustParseAddr("2001:db8:2::1"),
			RelayID:     mustHex(t, "0003000102aabbccdd01"),
			RemoteID:    mustHex(t, "00000de97375622d303030303031"),
			InterfaceID: []byte("veth-cli.100"),
			RelayPeer:   netip.MustParseAddr("2001:db8:1::2"),
			RelayMessage: mustHex(t, `
				0c                                # RELAY-FORW
				00                                # hop-count
				20010db8000200000000000000000001  # link-address
				20010db8000100000000000000000002  # peer-address`),
		}},
		{"released without lifetimes", `{"type":"ta","address":"2001:db8::5/128","client_id":"000300010a0b0c0d0e0f","iaid":7,"state":"released","cltt":"2026-12-04T19:21:29.5Z"}`, store.Binding{
			Key:      store.Key{Type: store.TypeTA, Prefix: netip.MustParsePrefix("2001:db8::5/128")},
			ClientID: mustHex(t, "000300010a0b0c0d0e0f"), IAID: 7, State: store.StateReleased,
			CLTT: cltt.Add(500 * time.Millisecond),
		}},
		{"declined with Kea's empty DUID", `{"type":"na","address":"2001:db8::6","client_id":"00","state":"declined","preferred_lifetime":0,"valid_lifetime":86400,"cltt":"2026-12-04T19:21:29Z"}`, store.Binding{
			Key:      store.Key{Type: store.TypeNA, Prefix: netip.MustParsePrefix("2001:db8::6/128")},
			ClientID: []byte{0}, State: store.StateDeclined, ValidLifetime: 86400, CLTT: cltt,
		}},
		{"infinite lifetimes", `{"type":"na","address":"2001:db8::7","client_id":"000300010a0b0c0d0e0f","iaid":0,"preferred_lifetime":4294967295,"valid_lifetime":4294967295,"state":"active","cltt":"2026-12-04T19:21:29Z"}`, store.Binding{
			Key:      store.Key{Type: store.TypeNA, Prefix: netip.MustParsePrefix("2001:db8::7/128")},
			ClientID: mustHex(t, "000300010a0b0c0d0e0f"), State: store.StateActive,
			PreferredLifetime: 0xffffffff, ValidLifetime: 0xffffffff, CLTT: cltt,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got store.Binding
			if err := DecodeRecord([]byte(tt.line), &got); err != nil {
				t.Fatal(err)
			}
			assertBinding(t, got, tt.want)

			// AppendRecord writes what DecodeRecord reads back.
			line, err := AppendRecord(nil, &got)
			if err != nil {
				t.Fatal(err)
			}
			var again store.Binding
			if err := DecodeRecord(line, &again); err != nil {
				t.Fatalf("DecodeRecord(%s): %v", line, err)
			}
			if !bindingsEqual(&got, &again) {
				t.Errorf("round trip changed the binding:\n%s\n%s", describe(&got), describe(&again))
			}
		})
	}
}

func TestDecodeRecordInvalid(t *testing.T) {
	// with returns recordNA with field set to the raw JSON value, or removed
	// when value is empty.
	with := func(field, value string) string {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(recordNA), &m); err != nil {
			t.Fatal(err)
		}
		if value == "" {
			delete(m, field)
		} else {
			m[field] = json.RawMessage(value)
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	tests := []struct {
		name  string
		line  string
		field string
		want  error
	}{
		{"value cut off", `{"type":`, "type", ErrInvalidJSON},
		{"not JSON", `hello`, "", ErrInvalidJSON},
		{"array", `[1,2]`, "", ErrInvalidJSON},
		{"two objects", recordNA + recordNA, "", ErrInvalidJSON},
		{"unknown field", with("lease_time", `30`), "lease_time", ErrUnexpectedField},
		{"repeated field", strings.Replace(recordNA, `"iaid":1`, `"iaid":1,"iaid":2`, 1), "iaid", ErrUnexpectedField},
		{"type missing", with("type", ""), "type", ErrMissingField},
		{"type unknown", with("type", `"ia"`), "type", ErrInvalidValue},
		{"type number", with("type", `0`), "type", ErrInvalidValue},
		{"address missing", with("address", ""), "address", ErrMissingField},
		{"address IPv4", with("address", `"192.0.2.1"`), "address", ErrInvalidAddress},
		{"address with prefix on IA_NA", with("prefix", `"2001:db8::/64"`), "prefix", ErrUnexpectedField},
		{"address /64", with("address", `"2001:db8::/64"`), "address", ErrInvalidAddress},
		{"PD with address", strings.Replace(recordPD, `"prefix":"2001:db8:9000::/56"`, `"address":"2001:db8:9000::"`, 1), "address", ErrUnexpectedField},
		{"PD prefix host bits", strings.Replace(recordPD, `2001:db8:9000::/56`, `2001:db8:9000::1/56`, 1), "prefix", ErrInvalidAddress},
		{"PD prefix /0", strings.Replace(recordPD, `2001:db8:9000::/56`, `::/0`, 1), "prefix", ErrInvalidAddress},
		{"client_id missing", with("client_id", ""), "client_id", ErrMissingField},
		{"client_id odd hex", with("client_id", `"000"`), "client_id", ErrInvalidHex},
		{"client_id too short", with("client_id", `"0001"`), "client_id", ErrInvalidValue},
		{"client_id too long", with("client_id", `"`+strings.Repeat("ab", 131)+`"`), "client_id", ErrInvalidValue},
		{"cltt after 2262", with("cltt", `"2263-01-01T00:00:00Z"`), "cltt", ErrInvalidValue},
		{"cltt in 2200", with("cltt", `"2200-01-01T00:00:00Z"`), "cltt", ErrInvalidValue},
		{"cltt before 2000", with("cltt", `"1999-12-31T23:59:59Z"`), "cltt", ErrInvalidValue},
		{"address unspecified", with("address", `"::"`), "address", ErrInvalidAddress},
		{"address loopback", with("address", `"::1"`), "address", ErrInvalidAddress},
		{"address multicast", with("address", `"ff02::1"`), "address", ErrInvalidAddress},
		{"address link-local", with("address", `"fe80::1"`), "address", ErrInvalidAddress},
		{"PD prefix multicast", strings.Replace(recordPD, `2001:db8:9000::/56`, `ff00::/8`, 1), "prefix", ErrInvalidAddress},
		{"PD prefix at ::", strings.Replace(recordPD, `2001:db8:9000::/56`, `::/64`, 1), "prefix", ErrInvalidAddress},
		{"client_id null", with("client_id", `null`), "client_id", ErrInvalidValue},
		{"iaid negative", with("iaid", `-1`), "iaid", ErrInvalidValue},
		{"iaid string", with("iaid", `"1"`), "iaid", ErrInvalidValue},
		{"iaid fraction", with("iaid", `1.5`), "iaid", ErrInvalidValue},
		{"valid over 32 bits", with("valid_lifetime", `4294967296`), "valid_lifetime", ErrInvalidValue},
		{"valid missing", with("valid_lifetime", ""), "valid_lifetime", ErrMissingField},
		{"preferred over valid", with("preferred_lifetime", `31`), "preferred_lifetime", ErrInvalidValue},
		{"declined without client_id", `{"type":"na","address":"2001:db8::6","state":"declined","preferred_lifetime":0,"valid_lifetime":86400,"cltt":"2026-12-04T19:21:29Z"}`, "client_id", ErrMissingField},
		{"state unknown", with("state", `"bound"`), "state", ErrInvalidValue},
		{"expired with lifetime", with("state", `"expired"`), "preferred_lifetime", ErrInvalidValue},
		{"cltt missing", with("cltt", ""), "cltt", ErrMissingField},
		{"cltt unix seconds", with("cltt", `1796412089`), "cltt", ErrInvalidValue},
		{"cltt no zone", with("cltt", `"2026-12-04T19:21:29"`), "cltt", ErrInvalidValue},
		{"link_address bad", with("link_address", `"2001:db8::g"`), "link_address", ErrInvalidAddress},
		{"remote_id without data", with("remote_id", `"00000de9"`), "remote_id", ErrInvalidValue},
		{"relay_id bad hex", with("relay_id", `"xyz"`), "relay_id", ErrInvalidHex},
		{"interface_id empty", with("interface_id", `""`), "interface_id", ErrInvalidValue},
		{"relay_peer without message", with("relay_peer", `"2001:db8::1"`), "relay_message", ErrMissingField},
		{"relay_message without peer", strings.Replace(recordPD, `"relay_peer":"2001:db8:1::2",`, ``, 1), "relay_peer", ErrMissingField},
		{"relay_message not RELAY-FORW", strings.Replace(recordPD, `"relay_message":"0c00`, `"relay_message":"0d00`, 1), "relay_message", ErrInvalidValue},
		{"relay_message over 4096 bytes", strings.Replace(recordPD, `0c0020010db800020000000000000000000120010db8000100000000000000000002`, `0c00`+strings.Repeat("00", 4095), 1), "relay_message", ErrInvalidValue},
		{"relay_message short", strings.Replace(recordPD, `0c0020010db800020000000000000000000120010db8000100000000000000000002`, `0c00`, 1), "relay_message", ErrInvalidValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b store.Binding
			err := DecodeRecord([]byte(tt.line), &b)
			if !errors.Is(err, tt.want) {
				t.Fatalf("DecodeRecord = %v, want %v", err, tt.want)
			}
			var recErr *RecordError
			if !errors.As(err, &recErr) {
				t.Fatalf("error %T is not a *RecordError", err)
			}
			if recErr.Field != tt.field {
				t.Errorf("field = %q, want %q (%v)", recErr.Field, tt.field, err)
			}
		})
	}
}

func TestAppendRecordInvalid(t *testing.T) {
	bad := []store.Binding{
		{Key: store.Key{Type: 9, Prefix: netip.MustParsePrefix("2001:db8::1/128")}},
		{Key: store.Key{Type: store.TypeNA, Prefix: netip.MustParsePrefix("2001:db8::/64")}},
		{Key: store.Key{Type: store.TypeNA}},
		{Key: store.Key{Type: store.TypeNA, Prefix: netip.MustParsePrefix("2001:db8::1/128")}, State: 7},
	}
	for i := range bad {
		if _, err := AppendRecord(nil, &bad[i]); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("AppendRecord(%v %v state %v) = %v, want ErrInvalidValue", bad[i].Type, bad[i].Prefix, bad[i].State, err)
		}
	}
}

// post sends body to h and returns the status and decoded JSON answer.
func post(t *testing.T, h http.Handler, method, contentType, body string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, BindingsPath, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var answer map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
		t.Fatalf("answer %q is not JSON: %v", rec.Body.String(), err)
	}
	return rec.Code, answer
}

func TestHandlerAppliesBatch(t *testing.T) {
	st := newFakeStore()
	h, err := NewHandler(st, HandlerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	body := recordNA + "\n\n" + recordPD + "\n"
	code, answer := post(t, h, http.MethodPost, "application/x-ndjson; charset=utf-8", body)
	if code != http.StatusOK {
		t.Fatalf("status %d %v, want 200", code, answer)
	}
	if answer["records"] != float64(2) || answer["last_seq"] != float64(2) {
		t.Errorf("answer %v, want 2 records, last_seq 2", answer)
	}
	if n := st.appliedCount(); n != 2 {
		t.Errorf("store got %d bindings, want 2", n)
	}
	if s := h.Stats(); s.Requests != 1 || s.Records != 2 {
		t.Errorf("stats %+v, want 1 request, 2 records", s)
	}
}

// TestHandlerAnswersAfterApply holds Apply and checks that no answer comes
// before it returns.
func TestHandlerAnswersAfterApply(t *testing.T) {
	st := newFakeStore()
	gate := make(chan struct{})
	st.gate = gate
	h, err := NewHandler(st, HandlerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	answered := make(chan int, 1)
	go func() {
		resp, err := http.Post(srv.URL+BindingsPath, ContentTypeNDJSON, strings.NewReader(recordNA+"\n"))
		if err != nil {
			answered <- -1
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	waitFor(t, "Apply to be called", func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.waiting == 1
	})
	select {
	case code := <-answered:
		t.Fatalf("answered %d while Apply had not returned", code)
	case <-time.After(50 * time.Millisecond):
	}
	close(gate)
	if code := <-answered; code != http.StatusOK {
		t.Fatalf("status %d, want 200", code)
	}
	if n := st.appliedCount(); n != 1 {
		t.Errorf("store has %d bindings after 200, want 1", n)
	}
}

func TestHandlerRejects(t *testing.T) {
	tests := []struct {
		name        string
		method      string
		contentType string
		body        string
		status      int
		line        float64
		field       string
	}{
		{"invalid record applies nothing", http.MethodPost, ContentTypeNDJSON,
			recordNA + "\n" + strings.Replace(recordPD, `"iaid":1`, `"iaid":-1`, 1) + "\n", http.StatusBadRequest, 2, "iaid"},
		{"unknown field", http.MethodPost, ContentTypeNDJSON,
			"\n" + strings.Replace(recordNA, `"iaid":1`, `"iaid":1,"hostname":"x"`, 1), http.StatusBadRequest, 2, "hostname"},
		{"not JSON", http.MethodPost, ContentTypeNDJSON, recordNA + "\nhello\n", http.StatusBadRequest, 2, ""},
		{"GET", http.MethodGet, "", "", http.StatusMethodNotAllowed, 0, ""},
		{"JSON content type", http.MethodPost, "application/json", recordNA, http.StatusUnsupportedMediaType, 0, ""},
		{"no content type", http.MethodPost, "", recordNA, http.StatusUnsupportedMediaType, 0, ""},
		{"oversize", http.MethodPost, ContentTypeNDJSON, strings.Repeat(recordNA+"\n", 10), http.StatusRequestEntityTooLarge, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newFakeStore()
			h, err := NewHandler(st, HandlerConfig{MaxRequestBytes: 1000})
			if err != nil {
				t.Fatal(err)
			}
			code, answer := post(t, h, tt.method, tt.contentType, tt.body)
			if code != tt.status {
				t.Fatalf("status %d %v, want %d", code, answer, tt.status)
			}
			if answer["error"] == nil || answer["error"] == "" {
				t.Errorf("answer %v has no error text", answer)
			}
			if line, _ := answer["line"].(float64); line != tt.line {
				t.Errorf("line = %v, want %v", answer["line"], tt.line)
			}
			if field, _ := answer["field"].(string); field != tt.field {
				t.Errorf("field = %q, want %q", field, tt.field)
			}
			if n := st.appliedCount(); n != 0 {
				t.Errorf("store got %d bindings from a rejected request", n)
			}
			if s := h.Stats(); s.RejectedRequests != 1 {
				t.Errorf("rejected = %d, want 1", s.RejectedRequests)
			}
		})
	}
}

// TestHandlerOversizeChunked sends a body without Content-Length.
func TestHandlerOversizeChunked(t *testing.T) {
	st := newFakeStore()
	h, err := NewHandler(st, HandlerConfig{MaxRequestBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	body := io.MultiReader(strings.NewReader(strings.Repeat(recordNA+"\n", 10)))
	resp, err := http.Post(srv.URL+BindingsPath, ContentTypeNDJSON, body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d, want 413", resp.StatusCode)
	}
}

func TestHandlerStoreFailure(t *testing.T) {
	st := newFakeStore()
	st.failNext = 1
	h, err := NewHandler(st, HandlerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	code, answer := post(t, h, http.MethodPost, ContentTypeNDJSON, recordNA)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("status %d %v, want 503", code, answer)
	}
	if s := h.Stats(); s.FailedRequests != 1 {
		t.Errorf("failed = %d, want 1", s.FailedRequests)
	}
}

// TestClientRoundTrip sends every binding of the Kea test file through a
// real server, in several requests, and compares what the store got.
func TestClientRoundTrip(t *testing.T) {
	lines := readLeaseFile(t)
	want, _ := replay(t, lines[1:])

	st := newFakeStore()
	h, err := NewHandler(st, HandlerConfig{MaxRequestBytes: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c, err := NewClient(ClientConfig{URL: srv.URL, MaxRequestBytes: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	// The records carry no source: the handler stores its own.
	stored := slices.Clone(want)
	for i := range stored {
		stored[i].Source = store.SourceIngestAPI
	}
	assertSequence(t, st.snapshotApplied(), stored)
	if s := h.Stats(); s.Requests < 2 {
		t.Errorf("requests = %d, want the batch split over several", s.Requests)
	}

	// A second Send reuses the buffer and the connection.
	if err := c.Send(context.Background(), want[:3]); err != nil {
		t.Fatal(err)
	}
	if n := st.appliedCount(); n != len(want)+3 {
		t.Errorf("store got %d bindings, want %d", n, len(want)+3)
	}
}

func TestClientReportsRejectedIndex(t *testing.T) {
	lines := readLeaseFile(t)
	bindings, _ := replay(t, lines[1:6])
	bindings[3].PreferredLifetime = bindings[3].ValidLifetime + 1 // the server rejects this

	st := newFakeStore()
	h, err := NewHandler(st, HandlerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c, err := NewClient(ClientConfig{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Send(context.Background(), bindings)
	var respErr *ResponseError
	if !errors.As(err, &respErr) {
		t.Fatalf("Send = %v, want a *ResponseError", err)
	}
	if respErr.StatusCode != http.StatusBadRequest || respErr.Index != 3 || respErr.Field != "preferred_lifetime" {
		t.Errorf("error %+v, want 400 at index 3, field preferred_lifetime", respErr)
	}
	if n := st.appliedCount(); n != 0 {
		t.Errorf("store got %d bindings from a rejected request", n)
	}
}

func TestClientConfig(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:8547", "ftp://127.0.0.1/", "http://"} {
		if _, err := NewClient(ClientConfig{URL: u}); err == nil {
			t.Errorf("NewClient(%q) = nil error", u)
		}
	}
	if _, err := NewHandler(nil, HandlerConfig{}); err == nil {
		t.Error("NewHandler(nil) = nil error")
	}
	c, err := NewClient(ClientConfig{URL: "http://127.0.0.1:1", MaxRequestBytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	lines := readLeaseFile(t)
	bindings, _ := replay(t, lines[1:2])
	if err := c.Send(context.Background(), bindings); err == nil || !bytes.Contains([]byte(err.Error()), []byte("MaxRequestBytes")) {
		t.Errorf("Send of a record over MaxRequestBytes = %v, want an error naming MaxRequestBytes", err)
	}
}
