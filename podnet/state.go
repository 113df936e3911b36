package podnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultRunDir keeps the pods' state files and locks (on tmpfs: a pod
// namespace does not outlive a boot).
const DefaultRunDir = "/run/arrow/podnet"

// podState is what the attachments of one pod namespace share.
type podState struct {
	// Forwarding is net.ipv4.ip_forward of the namespace before the
	// first attachment, put back by the last detach.
	Forwarding string `json:"forwarding"`
	// Seq numbers attachments in order: the lowest is the pod's first
	// container.
	Seq        uint64      `json:"seq"`
	Containers []container `json:"containers"`
}

// container is one attached container.
type container struct {
	ID    string `json:"id"`
	Tap   string `json:"tap"`
	Index int    `json:"index"` // its /30 of linkNet
	Seq   uint64 `json:"seq"`
	Ports []Port `json:"ports,omitempty"`
}

// nsKey names a namespace's files by its nsfs device and inode: the
// sandbox's /var/run/netns/cni-… and its containers' /proc/PID/ns/net are
// two paths of one namespace.
func nsKey(nsPath string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(nsPath, &st); err != nil {
		return "", fmt.Errorf("network namespace %s: %w", nsPath, err)
	}
	return fmt.Sprintf("netns-%d-%d", st.Dev, st.Ino), nil
}

// podLock is the lock of one namespace's state, held by one attachment
// or detachment at a time, across processes (flock).
type podLock struct {
	f         *os.File
	lockPath  string
	statePath string
}

// lockPod takes the lock of nsPath's state under runDir, waiting until
// ctx is done. The lock file is removed by the last detach: a waiter that
// then holds a lock on the removed file tries again with the new one.
func lockPod(ctx context.Context, runDir, nsPath string) (*podLock, error) {
	key, err := nsKey(nsPath)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return nil, fmt.Errorf("pod network state: %w", err)
	}
	l := &podLock{lockPath: filepath.Join(runDir, key+".lock"), statePath: filepath.Join(runDir, key+".json")}
	for {
		f, err := os.OpenFile(l.lockPath, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("pod network lock: %w", err)
		}
		for {
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
			if !errors.Is(err, unix.EWOULDBLOCK) {
				break
			}
			select {
			case <-ctx.Done():
				f.Close()
				return nil, fmt.Errorf("pod network lock %s: %w", l.lockPath, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("pod network lock %s: %w", l.lockPath, err)
		}
		var held, named unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &held); err != nil {
			f.Close()
			return nil, fmt.Errorf("pod network lock %s: %w", l.lockPath, err)
		}
		if err := unix.Stat(l.lockPath, &named); err == nil && named.Ino == held.Ino && named.Dev == held.Dev {
			l.f = f
			return l, nil
		}
		f.Close() // removed meanwhile: lock the new file
	}
}

func (l *podLock) unlock() { l.f.Close() }

// load reads the state; none is an empty state.
func (l *podLock) load() (*podState, error) {
	b, err := os.ReadFile(l.statePath)
	if os.IsNotExist(err) {
		return &podState{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pod network state: %w", err)
	}
	var s podState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("pod network state %s: %w", l.statePath, err)
	}
	return &s, nil
}

// save writes the state atomically, or removes it and the lock file when
// no container is attached.
func (l *podLock) save(s *podState) error {
	if len(s.Containers) == 0 {
		if err := os.Remove(l.statePath); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("pod network state: %w", err)
		}
		if err := os.Remove(l.lockPath); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("pod network lock: %w", err)
		}
		return nil
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := l.statePath + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("pod network state: %w", err)
	}
	if err := os.Rename(tmp, l.statePath); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pod network state: %w", err)
	}
	return nil
}
