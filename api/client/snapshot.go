package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/arrowsys/arrow/api"
)

// CreateSnapshot saves a running arrow as an application snapshot, once
// it is ready.
func (c *Client) CreateSnapshot(ctx context.Context, req *api.SnapshotCreateRequest) (api.Snapshot, error) {
	var out api.Snapshot
	return out, c.do(ctx, http.MethodPost, "/snapshots", nil, req, &out)
}

// Snapshots lists the application snapshots.
func (c *Client) Snapshots(ctx context.Context) ([]api.Snapshot, error) {
	var out []api.Snapshot
	return out, c.do(ctx, http.MethodGet, "/snapshots", nil, nil, &out)
}

// Snapshot describes the application snapshot name.
func (c *Client) Snapshot(ctx context.Context, name string) (api.Snapshot, error) {
	var out api.Snapshot
	return out, c.do(ctx, http.MethodGet, "/snapshots/"+url.PathEscape(name), nil, nil, &out)
}

// RemoveSnapshot deletes the application snapshot name; its running
// clones go on.
func (c *Client) RemoveSnapshot(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/snapshots/"+url.PathEscape(name), nil, nil, nil)
}
