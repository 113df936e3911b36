package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// MemoryFile backs the guest's RAM with a file instead of anonymous memory:
// the RAM of a VM template, or a clone's copy-on-write view of it (package
// template).
type MemoryFile struct {
	// Path is the file, on tmpfs. Arrow opens it and QEMU reopens it
	// through /proc/self/fd, so QEMU needs no access to its directory;
	// QEMU 7.2 opens it read-write even for a private mapping, so the
	// user QEMU runs as must be allowed to write it (its owner).
	Path string
	// Shared maps the file shared: the guest's RAM is the file, and what
	// the guest writes lands in it (a template being built). Otherwise
	// the mapping is private: the guest starts from the file's contents
	// and its writes go to pages of its own (a clone).
	Shared bool
}

// snapshotArgs are QEMU's arguments for c.Memory, which QEMU inherits on
// memoryFD, and c.Incoming.
func (c Config) snapshotArgs(memoryFD int) []string {
	var args []string
	if c.Memory != nil {
		args = append(args, "-object", "memory-backend-file,id=mem,size="+strconv.Itoa(c.MemoryMiB)+"M,mem-path="+fdPath(memoryFD)+",share="+onOff(c.Memory.Shared))
	}
	if c.Incoming {
		// -S: once the state is loaded the VM stays paused until
		// [Machine.Resume], so a pool can hold clones ready to run.
		args = append(args, "-incoming", "defer", "-S")
	}
	return args
}

// validateSnapshot checks the fields of c that a snapshot (a template or
// its clone) sets: Memory.
func (c Config) validateSnapshot() error {
	if c.Memory == nil {
		return nil
	}
	if c.virtiofs() {
		return errors.New("a file-backed guest memory cannot be combined with virtiofs shares (they need a memfd backend)")
	}
	if c.Memory.Path == "" {
		return errors.New("memory file: no path")
	}
	return nil
}

// openMemory opens the memory file for QEMU to reopen: read-only here,
// QEMU decides how it maps it.
func openMemory(mf MemoryFile) (*os.File, error) {
	f, err := os.OpenFile(mf.Path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("guest memory file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("guest memory file %s: not a regular file", mf.Path)
	}
	return f, nil
}

// SendFD hands QEMU an open file under name (QMP getfd, the descriptor
// travelling as SCM_RIGHTS with the command), for commands that take
// "fd:name" URIs.
func (q *QMP) SendFD(ctx context.Context, name string, f *os.File) error {
	_, err := q.executeFD(ctx, "getfd", map[string]string{"fdname": name}, f)
	return err
}

// executeFD runs command with f's descriptor attached (SCM_RIGHTS).
func (q *QMP) executeFD(ctx context.Context, command string, args any, f *os.File) (json.RawMessage, error) {
	uc, ok := q.conn.(*net.UnixConn)
	if !ok {
		return nil, fmt.Errorf("qmp %s: the monitor is not a unix socket", command)
	}
	return q.execute(ctx, command, args, func(b []byte) error {
		_, _, err := uc.WriteMsgUnix(b, syscall.UnixRights(int(f.Fd())), nil)
		return err
	})
}

// Save pauses the VM and writes its device state to w (a migration stream
// without the RAM, which stays in the VM's shared [MemoryFile]). The VM is
// left paused; the caller ends it.
func (m *Machine) Save(ctx context.Context, w *os.File) error { return m.save(ctx, w, true) }

// SaveAll pauses the VM and writes its whole state to w, the RAM
// included: the state of a running clone, whose RAM is its own (a
// private mapping), for an application snapshot. The VM is left paused:
// [Machine.Resume] runs it on.
func (m *Machine) SaveAll(ctx context.Context, w *os.File) error { return m.save(ctx, w, false) }

// Restore loads a state written by [Machine.Save] into a VM started with
// Config.Incoming. The VM is paused afterwards: see [Machine.Resume].
func (m *Machine) Restore(ctx context.Context, r *os.File) error { return m.restore(ctx, r, true) }

// RestoreAll loads a state written by [Machine.SaveAll]: its RAM lands in
// the VM's memory (in its [MemoryFile] when that is shared).
func (m *Machine) RestoreAll(ctx context.Context, r *os.File) error { return m.restore(ctx, r, false) }

// sharedCapability sets x-ignore-shared: on for a stream of the devices
// alone, off for one with the RAM. Both ends must agree, as the stream's
// layout depends on it; a clone's QEMU has it on from its restore.
func sharedCapability(on bool) map[string]any {
	return map[string]any{"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": on}}}
}

func (m *Machine) save(ctx context.Context, w *os.File, ignoreShared bool) error {
	q, err := m.QMP(ctx)
	if err != nil {
		return err
	}
	if _, err := q.Execute(ctx, "stop", nil); err != nil {
		return err
	}
	if _, err := q.Execute(ctx, "migrate-set-capabilities", sharedCapability(ignoreShared)); err != nil {
		return err
	}
	if err := q.SendFD(ctx, "arrow-state", w); err != nil {
		return err
	}
	if _, err := q.Execute(ctx, "migrate", map[string]any{"uri": "fd:arrow-state"}); err != nil {
		return err
	}
	return m.awaitMigration(ctx, q, "save")
}

func (m *Machine) restore(ctx context.Context, r *os.File, ignoreShared bool) error {
	q, err := m.QMP(ctx)
	if err != nil {
		return err
	}
	if _, err := q.Execute(ctx, "migrate-set-capabilities", sharedCapability(ignoreShared)); err != nil {
		return err
	}
	if err := q.SendFD(ctx, "arrow-state", r); err != nil {
		return err
	}
	if _, err := q.Execute(ctx, "migrate-incoming", map[string]any{"uri": "fd:arrow-state"}); err != nil {
		return err
	}
	return m.awaitMigration(ctx, q, "restore")
}

// Resume runs a paused VM.
func (m *Machine) Resume(ctx context.Context) error {
	q, err := m.QMP(ctx)
	if err != nil {
		return err
	}
	_, err = q.Execute(ctx, "cont", nil)
	return err
}

// awaitMigration polls the migration's status until it completed or
// failed. A failed incoming migration makes QEMU exit, which ends the wait
// too.
func (m *Machine) awaitMigration(ctx context.Context, q *QMP, what string) error {
	delay := time.Millisecond
	for {
		raw, err := q.Execute(ctx, "query-migrate", nil)
		if err != nil {
			// A stream QEMU cannot load makes it exit: say why.
			select {
			case <-m.exited:
				return fmt.Errorf("%s: QEMU exited: %s", what, strings.TrimSpace(m.stderr.String()))
			case <-time.After(time.Second):
			}
			return fmt.Errorf("%s: %w", what, err)
		}
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		_ = json.Unmarshal(raw, &st)
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			msg := st.ErrorDesc
			if msg == "" {
				msg = m.stderr.String()
			}
			return fmt.Errorf("%s: migration %s: %s", what, st.Status, msg)
		}
		select {
		case <-m.exited:
			return fmt.Errorf("%s: QEMU exited: %s", what, strings.TrimSpace(m.stderr.String()))
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(delay):
		}
		if delay < 20*time.Millisecond {
			delay *= 2
		}
	}
}
