package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/valyala/bytebufferpool"

	"github.com/alqd/alqd/store"
)

// BindingsPath is the path the Handler serves.
const BindingsPath = "/v1/bindings"

// ContentTypeNDJSON is the media type of a request body: one JSON record per
// line.
const ContentTypeNDJSON = "application/x-ndjson"

// DefaultMaxRequestBytes is the default bound on a request body, about
// 10,000 records with relay information.
const DefaultMaxRequestBytes = 4 << 20

// HandlerConfig configures a Handler. The zero value works.
type HandlerConfig struct {
	// MaxRequestBytes bounds a request body; a larger one gets 413.
	// Default DefaultMaxRequestBytes.
	MaxRequestBytes int64

	// Logger receives failed Apply calls (Error). Rejected requests are
	// only counted, and the client gets the reason. Nil discards.
	Logger *slog.Logger
}

// HandlerStats is a snapshot of a Handler's counters.
type HandlerStats struct {
	Requests         uint64 // requests that got 200
	Records          uint64 // records committed by those requests
	RejectedRequests uint64 // requests that got a 4xx status
	FailedRequests   uint64 // requests whose Apply failed (503)

	// RejectedByStatus splits RejectedRequests by status code. It has a
	// key for every 4xx status the handler sends (400, 404, 405, 413 and
	// 415), also when its count is 0. Each Stats call returns a new map.
	RejectedByStatus map[int]uint64
}

// rejectStatuses lists the 4xx status codes a Handler sends.
var rejectStatuses = [...]int{
	http.StatusBadRequest,
	http.StatusNotFound,
	http.StatusMethodNotAllowed,
	http.StatusRequestEntityTooLarge,
	http.StatusUnsupportedMediaType,
}

// Handler serves POST /v1/bindings: a body of NDJSON binding records
// (docs/INGEST.md), validated in full and then committed in one Apply. It
// answers 200 only after Apply returned, so the changes are durable; any
// invalid record rejects the whole request with 400 and applies nothing.
// Every binding it stores has source store.SourceIngestAPI, so the Kea
// follower never ends it. Safe for concurrent use.
type Handler struct {
	apply    Applier
	maxBytes int64
	log      *slog.Logger

	requests, records, rejected, failed atomic.Uint64
	rejectedBy                          [len(rejectStatuses)]atomic.Uint64
}

// NewHandler returns a handler that commits to a.
func NewHandler(a Applier, cfg HandlerConfig) (*Handler, error) {
	if a == nil {
		return nil, errors.New("ingest: handler needs a store")
	}
	if cfg.MaxRequestBytes < 0 {
		return nil, fmt.Errorf("ingest: MaxRequestBytes %d is negative", cfg.MaxRequestBytes)
	}
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{apply: a, maxBytes: cfg.MaxRequestBytes, log: logger}, nil
}

// Stats returns the handler's counters. Safe for concurrent use.
func (h *Handler) Stats() HandlerStats {
	st := HandlerStats{
		Requests:         h.requests.Load(),
		Records:          h.records.Load(),
		RejectedRequests: h.rejected.Load(),
		FailedRequests:   h.failed.Load(),
		RejectedByStatus: make(map[int]uint64, len(rejectStatuses)),
	}
	for i, code := range rejectStatuses {
		st.RejectedByStatus[code] = h.rejectedBy[i].Load()
	}
	return st
}

// errorBody is the JSON body of every answer other than 200.
type errorBody struct {
	Error string `json:"error"`           // what is wrong, in words
	Line  int    `json:"line,omitempty"`  // 1-based line of the first invalid record
	Field string `json:"field,omitempty"` // JSON field of that record at fault
}

// okBody is the JSON body of a 200 answer.
type okBody struct {
	Records int    `json:"records"`  // records committed
	LastSeq uint64 `json:"last_seq"` // store sequence number after the commit
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Decode: method, media type and a bounded body.
	if r.URL.Path != BindingsPath {
		h.reject(w, http.StatusNotFound, errorBody{Error: "not found; the ingest API serves POST " + BindingsPath})
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.reject(w, http.StatusMethodNotAllowed, errorBody{Error: "method " + r.Method + " not allowed; use POST"})
		return
	}
	if media, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || media != ContentTypeNDJSON {
		h.reject(w, http.StatusUnsupportedMediaType, errorBody{Error: "Content-Type " + strconv.Quote(r.Header.Get("Content-Type")) + " not supported; send " + ContentTypeNDJSON})
		return
	}
	buf := bytebufferpool.Get()
	defer bytebufferpool.Put(buf)
	body, err := h.readBody(w, r, buf)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.reject(w, http.StatusRequestEntityTooLarge, errorBody{Error: "request body exceeds " + strconv.FormatInt(h.maxBytes, 10) + " bytes; split the records over several requests"})
			return
		}
		h.reject(w, http.StatusBadRequest, errorBody{Error: "reading the request body failed: " + err.Error()})
		return
	}

	// Validate every record before applying any.
	bindings, err := decodeRecords(body)
	if err != nil {
		var recErr *RecordError
		if errors.As(err, &recErr) {
			h.reject(w, http.StatusBadRequest, errorBody{Error: strings.TrimPrefix(recErr.Err.Error(), "ingest: "), Line: recErr.Line, Field: recErr.Field})
			return
		}
		h.reject(w, http.StatusBadRequest, errorBody{Error: err.Error()})
		return
	}

	// Act: one Apply, durable when it returns.
	seq, err := h.apply.Apply(r.Context(), bindings, nil)
	if errors.Is(err, store.ErrInvalidBinding) {
		h.reject(w, http.StatusBadRequest, errorBody{Error: err.Error()})
		return
	}
	if err != nil {
		h.failed.Add(1)
		h.log.Error("ingest request not applied", "error", err, "records", len(bindings), "remote", r.RemoteAddr)
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "storing the records failed; nothing was applied, retry later"})
		return
	}
	h.requests.Add(1)
	h.records.Add(uint64(len(bindings)))
	writeJSON(w, http.StatusOK, okBody{Records: len(bindings), LastSeq: seq})
}

// readBody reads the whole body, at most maxBytes, into buf and returns
// its bytes. They are valid until buf goes back to the pool, which is why
// Apply must not keep them (see Applier).
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, buf *bytebufferpool.ByteBuffer) ([]byte, error) {
	if r.ContentLength > h.maxBytes {
		return nil, &http.MaxBytesError{Limit: h.maxBytes}
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, h.maxBytes))
	return buf.B, err
}

// decodeRecords decodes every non-blank line of body into bindings with
// source SourceIngestAPI. Line numbers count all lines, blank ones included.
func decodeRecords(body []byte) ([]store.Binding, error) {
	bindings := make([]store.Binding, 0, bytes.Count(body, []byte{'\n'})+1)
	for lineNo := 1; len(body) > 0; lineNo++ {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var b store.Binding
		if err := DecodeRecord(line, &b); err != nil {
			var recErr *RecordError
			if errors.As(err, &recErr) {
				recErr.Line = lineNo
			}
			return nil, err
		}
		b.Source = store.SourceIngestAPI
		bindings = append(bindings, b)
	}
	return bindings, nil
}

func (h *Handler) reject(w http.ResponseWriter, status int, body errorBody) {
	h.rejected.Add(1)
	for i, code := range rejectStatuses {
		if code == status {
			h.rejectedBy[i].Add(1)
		}
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v) // errorBody and okBody always marshal
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// drainBody reads a response body to its end so the connection can be
// reused, at most limit bytes.
func drainBody(r io.Reader, limit int64) {
	io.Copy(io.Discard, io.LimitReader(r, limit))
}
