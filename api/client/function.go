package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/arrowsys/arrow/api"
)

// CreateFunction creates a function: its handler started once, saved
// when ready.
func (c *Client) CreateFunction(ctx context.Context, req *api.FunctionCreateRequest) (api.Function, error) {
	var out api.Function
	return out, c.do(ctx, http.MethodPost, "/functions", nil, req, &out)
}

// Functions lists the functions.
func (c *Client) Functions(ctx context.Context) ([]api.Function, error) {
	var out []api.Function
	return out, c.do(ctx, http.MethodGet, "/functions", nil, nil, &out)
}

// Function describes the function name.
func (c *Client) Function(ctx context.Context, name string) (api.Function, error) {
	var out api.Function
	return out, c.do(ctx, http.MethodGet, "/functions/"+url.PathEscape(name), nil, nil, &out)
}

// RemoveFunction removes the function name and its instances.
func (c *Client) RemoveFunction(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/functions/"+url.PathEscape(name), nil, nil, nil)
}

// FunctionLogs passes the function's log entries to fn.
func (c *Client) FunctionLogs(ctx context.Context, name string, tail string, fn func(api.LogEntry) error) error {
	q := url.Values{}
	if tail != "" {
		q.Set("tail", tail)
	}
	return stream(c, ctx, "/functions/"+url.PathEscape(name)+"/logs", q, fn)
}

// Invoke sends body to the function name and returns arrowd's response
// whatever its status (the caller reads and closes its body): the
// handler's answer, or Arrow's refusal (413, 429, 504, ...) as an
// api.Error.
func (c *Client) Invoke(ctx context.Context, name string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://arrowd/"+api.Version+"/functions/"+url.PathEscape(name)+"/invoke", body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w at %s: %w", ErrUnreachable, c.socket, unwrapURL(err))
	}
	return resp, nil
}
