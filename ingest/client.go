package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/alqd/alqd/store"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// URL is the base URL of the ingest API, for example
	// "http://127.0.0.1:8547"; requests go to URL + BindingsPath. Required.
	URL string

	// HTTPClient sends the requests. Default: a client of its own with
	// keep-alive connections and no proxy.
	HTTPClient *http.Client

	// MaxRequestBytes bounds one request body; Send splits larger batches.
	// It must not exceed the server's limit. Default
	// DefaultMaxRequestBytes, the server's default.
	MaxRequestBytes int
}

// Client sends bindings to an ingest API Handler. It is safe for concurrent
// use; concurrent Sends use separate connections from the pool.
type Client struct {
	url      string
	http     *http.Client
	maxBytes int
	buffers  sync.Pool // *[]byte request bodies
}

// maxPooledBuffer is the largest request buffer a Client keeps for reuse.
const maxPooledBuffer = 16 << 20

// ResponseError reports a request that the server rejected with a status
// other than 200.
type ResponseError struct {
	StatusCode int    // HTTP status
	Index      int    // index in the bindings given to Send of the rejected record; -1 if none
	Field      string // JSON field at fault, if the server named one
	Message    string // the server's error text
}

func (e *ResponseError) Error() string {
	if e.Index >= 0 {
		return fmt.Sprintf("ingest: server rejected binding %d (field %q) with status %d: %s", e.Index, e.Field, e.StatusCode, e.Message)
	}
	return fmt.Sprintf("ingest: server answered status %d: %s", e.StatusCode, e.Message)
}

// NewClient returns a client for the ingest API at cfg.URL.
func NewClient(cfg ClientConfig) (*Client, error) {
	base, err := url.Parse(cfg.URL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("ingest: client URL %q is not an http or https URL such as http://127.0.0.1:8547", cfg.URL)
	}
	if cfg.MaxRequestBytes < 0 {
		return nil, fmt.Errorf("ingest: MaxRequestBytes %d is negative", cfg.MaxRequestBytes)
	}
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	return &Client{
		url:      strings.TrimSuffix(base.String(), "/") + BindingsPath,
		http:     hc,
		maxBytes: cfg.MaxRequestBytes,
	}, nil
}

// Send commits bindings through the server and returns once the server
// reports them durable. Each binding is encoded straight into a reused
// request buffer. A batch larger than MaxRequestBytes goes out as several
// requests in order, each applied all or none. When a later request fails,
// the error includes how many bindings the earlier requests applied. A
// rejected record gives a *ResponseError with its index in bindings.
func (c *Client) Send(ctx context.Context, bindings []store.Binding) error {
	bufp := c.getBuffer()
	defer c.putBuffer(bufp)

	first := 0 // index of the first binding in the buffer
	for i := range bindings {
		start := len(*bufp)
		encoded, err := AppendRecord(*bufp, &bindings[i])
		if err != nil {
			return c.partial(first, len(bindings), fmt.Errorf("binding %d: %w", i, err))
		}
		encoded = append(encoded, '\n')
		*bufp = encoded
		if len(encoded) <= c.maxBytes {
			continue
		}
		if start == 0 {
			return c.partial(first, len(bindings), fmt.Errorf("ingest: binding %d encodes to %d bytes, more than MaxRequestBytes %d", i, len(encoded), c.maxBytes))
		}
		// Send what fitted, keep the record that did not.
		if err := c.post(ctx, encoded[:start], first); err != nil {
			return c.partial(first, len(bindings), err)
		}
		*bufp = encoded[:copy(encoded, encoded[start:])]
		first = i
	}
	if len(*bufp) == 0 {
		return nil
	}
	if err := c.post(ctx, *bufp, first); err != nil {
		return c.partial(first, len(bindings), err)
	}
	return nil
}

// partial adds to err how many bindings earlier requests applied.
func (c *Client) partial(applied, total int, err error) error {
	if applied == 0 {
		return err
	}
	return fmt.Errorf("ingest: %d of %d bindings applied before the failure: %w", applied, total, err)
}

// post sends one request body; first is the index of its first binding.
func (c *Client) post(ctx context.Context, body []byte, first int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ContentTypeNDJSON)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("ingest: sending %d bytes to %s failed: %w", len(body), c.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		drainBody(resp.Body, 64<<10)
		return nil
	}

	var answer errorBody
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	respErr := &ResponseError{StatusCode: resp.StatusCode, Index: -1, Message: strings.TrimSpace(string(raw))}
	if json.Unmarshal(raw, &answer) == nil && answer.Error != "" {
		respErr.Message, respErr.Field = answer.Error, answer.Field
		if answer.Line > 0 {
			// Send writes one record per line and no blank lines.
			respErr.Index = first + answer.Line - 1
		}
	}
	return respErr
}

func (c *Client) getBuffer() *[]byte {
	if p, ok := c.buffers.Get().(*[]byte); ok {
		*p = (*p)[:0]
		return p
	}
	b := make([]byte, 0, 64<<10)
	return &b
}

func (c *Client) putBuffer(p *[]byte) {
	if cap(*p) <= maxPooledBuffer {
		c.buffers.Put(p)
	}
}
