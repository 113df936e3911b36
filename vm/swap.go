package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/arrowsys/arrow/api"
)

// Changes to a running machine, for a clone that waited in a pool before
// it knew its application (package template): its disk and its published
// ports are the application's, not the ones it was started with.

// SwapDrive points drive i at the image d.Path, read-only as d says (the
// serial and cache mode stay the drive's): the image is opened here and
// passed to QEMU on the monitor, a file node is added for it, and the
// drive's format node is reopened on that node (QMP blockdev-reopen). The
// guest must not be using the drive: it sees the new image's size and
// data once it probes the device again.
func (m *Machine) SwapDrive(ctx context.Context, i int, d Drive) error {
	if i < 0 || i >= len(m.cfg.Drives) {
		return fmt.Errorf("swap drive %d: the machine has %d drives", i, len(m.cfg.Drives))
	}
	if err := d.validate(); err != nil {
		return fmt.Errorf("swap drive %d: %w", i, err)
	}
	f, err := openDrive(d)
	if err != nil {
		return err
	}
	defer f.Close()
	q, err := m.QMP(ctx)
	if err != nil {
		return err
	}
	raw, err := q.executeFD(ctx, "add-fd", nil, f)
	if err != nil {
		return fmt.Errorf("swap drive %d: %w", i, err)
	}
	var fdset struct {
		ID int `json:"fdset-id"`
	}
	if err := json.Unmarshal(raw, &fdset); err != nil {
		return fmt.Errorf("swap drive %d: add-fd answer: %w", i, err)
	}
	node := driveNode(i) + "-file" + strconv.FormatUint(m.swaps.Add(1), 10)
	cache := m.cfg.Drives[i].cacheMode()
	direct := cache == "none" || cache == "directsync"
	if _, err := q.Execute(ctx, "blockdev-add", map[string]any{
		"driver": "file", "node-name": node, "filename": "/dev/fdset/" + strconv.Itoa(fdset.ID),
		"read-only": d.ReadOnly, "cache": map[string]any{"direct": direct},
	}); err != nil {
		return fmt.Errorf("swap drive %d: %w", i, err)
	}
	if _, err := q.Execute(ctx, "blockdev-reopen", map[string]any{"options": []map[string]any{{
		"driver": "raw", "node-name": driveNode(i), "file": node, "read-only": d.ReadOnly,
		"cache": map[string]any{"direct": direct},
	}}}); err != nil {
		_, _ = q.Execute(ctx, "blockdev-del", map[string]any{"node-name": node})
		return fmt.Errorf("swap drive %d: %w", i, err)
	}
	// QEMU keeps the descriptor in the fd set for as long as the node
	// has it open; the set itself can go.
	_, _ = q.Execute(ctx, "remove-fd", map[string]any{"fdset-id": fdset.ID})
	return nil
}

// AddForward publishes f on the machine's user-mode network card nic
// (QEMU's hostfwd_add).
func (m *Machine) AddForward(ctx context.Context, nic int, f api.Port) error {
	if nic < 0 || nic >= len(m.cfg.NICs) || m.cfg.NICs[nic].User == nil {
		return fmt.Errorf("publish %s: network card %d is not on a user-mode network", hostfwd(f), nic)
	}
	q, err := m.QMP(ctx)
	if err != nil {
		return err
	}
	raw, err := q.Execute(ctx, "human-monitor-command", map[string]any{
		"command-line": "hostfwd_add " + netdevID(nic) + " " + hostfwd(f),
	})
	if err != nil {
		return fmt.Errorf("publish %s: %w", hostfwd(f), err)
	}
	// HMP reports failure as text, not as a QMP error.
	var out string
	_ = json.Unmarshal(raw, &out)
	if out = strings.TrimSpace(out); out != "" {
		return fmt.Errorf("publish %s: %s", hostfwd(f), out)
	}
	return nil
}

// Pause stops the guest's vCPUs; [Machine.Resume] runs them again.
func (m *Machine) Pause(ctx context.Context) error {
	q, err := m.QMP(ctx)
	if err != nil {
		return err
	}
	_, err = q.Execute(ctx, "stop", nil)
	return err
}

// SetConsole makes w (nil for none) receive the guest's console output
// from now on, in place of the writer given to [Start].
func (m *Machine) SetConsole(w io.Writer) { m.console.setWriter(w) }
