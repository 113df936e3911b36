//go:build linux

package agent

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/arrowsys/arrow/guest"
)

// warmArg, as arrow-init's only argument, makes it exit at once: the
// warm-up starts it as a stand-in application.
const warmArg = "arrow-warm"

// Where the warm-up mounts the placeholder disk; removed afterwards.
const (
	warmDir   = stageDir + "/warm"
	warmLower = warmDir + "/lower"
	warmRW    = warmDir + "/rw"
	warmMerge = warmDir + "/root"
)

// warm runs, in a pooled clone waiting for its application, the steps of
// a start that do not depend on the application, on the template's
// placeholder disk: decoding a spec, probing the disk, mounting it under
// an overlay, starting a process. Under TCG the first run of any code in a
// VM pays for its translation, and the translations belong to the QEMU
// process, not to the snapshot: a clone that ran these steps once while it
// waited runs them again, for its application, in a fraction of the time.
//
// Everything warm does is undone before it answers: the disk is released
// again (so the application's disk, attached later, is probed afresh) and
// the mounts are gone. A step that fails is reported and ends the warm-up;
// the guest is then merely colder.
func (a *agent) warm(payload []byte) guest.Warmed {
	t0 := time.Now()
	var w guest.Warmed
	err := a.warmSteps(payload, &w)
	if err != nil {
		w.Error = err.Error()
	}
	w.Nanos = time.Since(t0).Nanoseconds()
	a.debugf("warmed %v in %v (error: %v)", w.Steps, time.Since(t0), err)
	return w
}

func (a *agent) warmSteps(payload []byte, w *guest.Warmed) (err error) {
	var spec guest.Spec
	if err := guest.Decode(payload, &spec); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	w.Steps = append(w.Steps, "decode")
	if spec.Network != nil {
		err := setupNetwork(spec.Network)
		if uerr := unconfigure(spec.Network); err == nil {
			err = uerr
		}
		if err != nil {
			return fmt.Errorf("network: %w", err)
		}
		w.Steps = append(w.Steps, "network")
	}
	seed := make([]byte, 32)
	if _, err := rand.Read(seed); err != nil {
		return fmt.Errorf("entropy: %w", err)
	}
	if err := addEntropy(seed); err != nil {
		return fmt.Errorf("entropy: %w", err)
	}
	if spec.Root == nil {
		return nil
	}
	if err := a.attachDisks(); err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	// The disk must be released again whatever happens: a clone whose
	// disk stayed bound would keep the placeholder's size and cache.
	defer func() {
		if _, uerr := releaseDisks(); uerr != nil {
			err = errors.Join(err, fmt.Errorf("release the disk: %w", uerr))
		}
	}()
	dev, err := findDevice(spec.Root.Device, deviceWait)
	if err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	w.Steps = append(w.Steps, "disk")
	if err := warmRoot(dev, spec.Root.FSType); err != nil {
		return fmt.Errorf("root: %s (%s): %w", dev, spec.Root.FSType, err)
	}
	w.Steps = append(w.Steps, "root")
	if err := warmExec(); err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	w.Steps = append(w.Steps, "exec")
	return nil
}

// warmRoot mounts dev with an overlay on it, as switchRoot does, and
// unmounts both.
func warmRoot(dev, fsType string) (err error) {
	if err := os.MkdirAll(warmLower, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(warmDir)
	if err := unix.Mount(dev, warmLower, fsType, unix.MS_RDONLY, ""); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, unix.Unmount(warmLower, 0)) }()
	if err := mountOverlay(warmLower, warmRW, warmMerge); err != nil {
		_ = unix.Unmount(warmRW, 0)
		return err
	}
	// A first write through the overlay, as prepare's /etc files are.
	werr := os.MkdirAll(warmMerge+"/etc", 0o755)
	if werr == nil {
		werr = os.WriteFile(warmMerge+"/etc/hostname", []byte("arrow\n"), 0o644)
	}
	if werr != nil {
		_ = unix.Unmount(warmMerge, 0)
		_ = unix.Unmount(warmRW, 0)
		return werr
	}
	return errors.Join(unix.Unmount(warmMerge, 0), unix.Unmount(warmRW, 0))
}

// warmExec starts arrow-init itself as a stand-in application, the way
// start starts one (new session, credentials, piped output), and waits.
func warmExec() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, warmArg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: &syscall.Credential{}}
	_, err = cmd.Output()
	return err
}

// isWarmStandIn says whether this process is warmExec's stand-in.
func isWarmStandIn() bool {
	return os.Getpid() != 1 && len(os.Args) == 2 && os.Args[1] == warmArg
}
