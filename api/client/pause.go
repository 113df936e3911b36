package client

import (
	"context"
	"net/http"
	"net/url"
)

// Pause stops an arrow's VM until Unpause (docker pause).
func (c *Client) Pause(ctx context.Context, ref string) error {
	return c.do(ctx, http.MethodPost, "/arrows/"+url.PathEscape(ref)+"/pause", nil, nil, nil)
}

// Unpause continues a paused arrow's VM.
func (c *Client) Unpause(ctx context.Context, ref string) error {
	return c.do(ctx, http.MethodPost, "/arrows/"+url.PathEscape(ref)+"/unpause", nil, nil, nil)
}

// Rename gives an arrow the name name.
func (c *Client) Rename(ctx context.Context, ref, name string) error {
	return c.do(ctx, http.MethodPost, "/arrows/"+url.PathEscape(ref)+"/rename", url.Values{"name": {name}}, nil, nil)
}
