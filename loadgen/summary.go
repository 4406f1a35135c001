package loadgen

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/alqd/alqd/codec"
)

// ConnectionCounts counts the connections of a swarm by outcome.
type ConnectionCounts struct {
	Requested      int `json:"requested"`
	Established    int `json:"established"`      // sent their query
	Failed         int `json:"failed"`           // ended by an error: connect, STARTTLS, rejected query, read
	ClosedByServer int `json:"closed_by_server"` // ended by the server's FIN or reset
	Filtered       int `json:"filtered"`         // sent QUERY_BY_RELAY_ID
}

// ClassSummary describes the connections of one class (normal, slow or
// stalled). The spreads are over the established connections: messages and
// octets received per second of each connection's life.
type ClassSummary struct {
	Count             int    `json:"count"`
	Established       int    `json:"established"`
	ClosedByServer    int    `json:"closed_by_server"`
	Messages          int64  `json:"messages"`
	MessagesPerSecond Spread `json:"messages_per_s"`
	BytesPerSecond    Spread `json:"bytes_per_s"`
}

// RequestorSummaries describes the connections by class.
type RequestorSummaries struct {
	Normal  ClassSummary `json:"normal"`
	Slow    ClassSummary `json:"slow"`
	Stalled ClassSummary `json:"stalled"`
}

// SwarmSummary is the result of a swarm run, printed as JSON at its end.
// Latencies are in microseconds from the send time stamped by the churn to
// the read that returned the update, both on this machine's clock.
type SwarmSummary struct {
	Mode              string             `json:"mode"` // always "swarm"
	Server            string             `json:"server"`
	Processes         int                `json:"processes"`
	ElapsedSeconds    float64            `json:"elapsed_s"`
	StopReason        string             `json:"stop_reason"` // duration, count, closed (every connection ended) or canceled
	Connections       ConnectionCounts   `json:"connections"`
	Sources           int                `json:"sources"` // distinct local addresses bound
	Messages          int64              `json:"messages"`
	Updates           int64              `json:"updates"`    // OPTION_CLIENT_DATA options received
	Keepalives        int64              `json:"keepalives"` // LEASEQUERY-DATA without client data or status
	Bytes             int64              `json:"bytes"`
	MessagesPerSecond float64            `json:"messages_per_s"`
	UpdatesPerSecond  float64            `json:"updates_per_s"`
	BytesPerSecond    float64            `json:"bytes_per_s"`
	MessageTypes      map[string]int64   `json:"message_types"`
	Statuses          map[string]int64   `json:"statuses"`
	DecodeFailures    int64              `json:"decode_failures"` // messages or client data that did not decode, and framing errors
	Unstamped         int64              `json:"unstamped"`       // updates without a send-time stamp
	Errors            int64              `json:"errors"`
	FirstError        string             `json:"first_error,omitempty"`
	Latency           LatencySummary     `json:"latency_us"`
	Requestors        RequestorSummaries `json:"requestors"`

	// LatencyHistogram (the HdrHistogram V2 compressed encoding, base64)
	// and Results are set with SwarmConfig.IncludeRaw, for
	// MergeSwarmSummaries.
	LatencyHistogram string            `json:"latency_histogram,omitempty"`
	Results          []RequestorResult `json:"requestor_results,omitempty"`
}

// Failed reports whether the run saw a decode failure or a failed
// connection, or established none; the command then exits with a non-zero
// status.
func (s *SwarmSummary) Failed() bool {
	return s.DecodeFailures > 0 || s.Errors > 0 || s.Connections.Established == 0
}

// summary builds the summary of a finished run.
func (s *swarm) summary(requestors []*requestor, elapsed time.Duration, stop string) *SwarmSummary {
	sum := &SwarmSummary{
		Mode:           "swarm",
		Server:         s.cfg.Server,
		Processes:      1,
		ElapsedSeconds: elapsed.Seconds(),
		StopReason:     stop,
		Messages:       s.messages.Load(),
		Updates:        s.updates.Load(),
		Keepalives:     s.keepalives.Load(),
		Bytes:          s.bytes.Load(),
		MessageTypes:   make(map[string]int64),
		Statuses:       make(map[string]int64),
		DecodeFailures: s.decodeFail.Load(),
		Unstamped:      s.unstamped.Load(),
		Errors:         s.errors.Load(),
		FirstError:     s.firstError,
	}
	for t := range s.types {
		if n := s.types[t].Load(); n > 0 {
			sum.MessageTypes[codec.MsgType(t).String()] = n
		}
	}
	for code := range s.statuses {
		if n := s.statuses[code].Load(); n > 0 {
			name := codec.StatusCode(code).String()
			if code > maxCountedStatus {
				name = "other"
			}
			sum.Statuses[name] = n
		}
	}
	sum.setRates()

	results := make([]RequestorResult, len(requestors))
	for i, r := range requestors {
		results[i] = r.res
	}
	sum.setFromResults(results)

	h := s.lat.merged()
	sum.Latency = summarizeLatency(h)
	if s.cfg.IncludeRaw {
		if enc, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase); err == nil {
			sum.LatencyHistogram = string(enc)
		}
		sum.Results = results
	}
	return sum
}

func (s *SwarmSummary) setRates() {
	if s.ElapsedSeconds > 0 {
		s.MessagesPerSecond = float64(s.Messages) / s.ElapsedSeconds
		s.UpdatesPerSecond = float64(s.Updates) / s.ElapsedSeconds
		s.BytesPerSecond = float64(s.Bytes) / s.ElapsedSeconds
	}
}

// setFromResults fills the connection counts, the number of sources and
// the per-class summaries.
func (s *SwarmSummary) setFromResults(results []RequestorResult) {
	s.Connections = ConnectionCounts{Requested: len(results)}
	s.Requestors = RequestorSummaries{}
	sources := make(map[string]bool)
	var rates [numClasses]struct{ messages, bytes []float64 }
	for i := range results {
		r := &results[i]
		class := classIndex(r.Class)
		cs := s.classSummary(class)
		cs.Count++
		if r.Filtered {
			s.Connections.Filtered++
		}
		if r.Error != "" {
			s.Connections.Failed++
		}
		if r.ClosedByServer {
			s.Connections.ClosedByServer++
			cs.ClosedByServer++
		}
		if !r.Established {
			continue
		}
		s.Connections.Established++
		cs.Established++
		cs.Messages += r.Messages
		if r.Source != "" {
			sources[r.Source] = true
		}
		seconds := max(r.Seconds, 1e-3)
		rates[class].messages = append(rates[class].messages, float64(r.Messages)/seconds)
		rates[class].bytes = append(rates[class].bytes, float64(r.Bytes)/seconds)
	}
	s.Sources = len(sources)
	for class := range numClasses {
		cs := s.classSummary(class)
		cs.MessagesPerSecond = spreadOf(rates[class].messages)
		cs.BytesPerSecond = spreadOf(rates[class].bytes)
	}
}

func classIndex(name string) requestorClass {
	if i := slices.Index(classNames[:], name); i >= 0 {
		return requestorClass(i)
	}
	return classNormal
}

func (s *SwarmSummary) classSummary(c requestorClass) *ClassSummary {
	switch c {
	case classSlow:
		return &s.Requestors.Slow
	case classStalled:
		return &s.Requestors.Stalled
	}
	return &s.Requestors.Normal
}

// MergeSwarmSummaries combines the summaries of the processes of one swarm
// into the summary of the whole swarm. Every part must have been made with
// SwarmConfig.IncludeRaw; the result keeps the raw data, so it can be merged
// again. Rates are totals over the longest elapsed time.
func MergeSwarmSummaries(parts []*SwarmSummary) (*SwarmSummary, error) {
	if len(parts) == 0 {
		return nil, fmt.Errorf("%w: no summaries", ErrMerge)
	}
	sum := &SwarmSummary{
		Mode:         "swarm",
		Server:       parts[0].Server,
		MessageTypes: make(map[string]int64),
		Statuses:     make(map[string]int64),
	}

	// Add up the counters and the raw data.
	h := newLatencyHistogram()
	var results []RequestorResult
	var reasons []string
	for i, p := range parts {
		if p.LatencyHistogram == "" && p.Latency.Count > 0 || p.Results == nil && p.Connections.Requested > 0 {
			return nil, fmt.Errorf("%w: summary %d has no raw data (run it with IncludeRaw)", ErrMerge, i)
		}
		if p.LatencyHistogram != "" {
			part, err := hdrhistogram.Decode([]byte(p.LatencyHistogram))
			if err != nil {
				return nil, fmt.Errorf("%w: latency histogram of summary %d: %v", ErrMerge, i, err)
			}
			h.Merge(part)
		}
		sum.addCounters(p)
		if !slices.Contains(reasons, p.StopReason) {
			reasons = append(reasons, p.StopReason)
		}
		results = append(results, p.Results...)
	}

	// Derive what does not add up.
	sort.Strings(reasons)
	sum.StopReason = strings.Join(reasons, ",")
	sort.Slice(results, func(i, j int) bool { return results[i].Index < results[j].Index })
	sum.setRates()
	sum.setFromResults(results)
	sum.Latency = summarizeLatency(h)
	if enc, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase); err == nil {
		sum.LatencyHistogram = string(enc)
	}
	sum.Results = results
	return sum, nil
}

// addCounters adds the counters of p to s.
func (s *SwarmSummary) addCounters(p *SwarmSummary) {
	s.Processes += p.Processes
	s.ElapsedSeconds = max(s.ElapsedSeconds, p.ElapsedSeconds)
	s.Messages += p.Messages
	s.Updates += p.Updates
	s.Keepalives += p.Keepalives
	s.Bytes += p.Bytes
	s.DecodeFailures += p.DecodeFailures
	s.Unstamped += p.Unstamped
	s.Errors += p.Errors
	if s.FirstError == "" {
		s.FirstError = p.FirstError
	}
	for k, v := range p.MessageTypes {
		s.MessageTypes[k] += v
	}
	for k, v := range p.Statuses {
		s.Statuses[k] += v
	}
}
