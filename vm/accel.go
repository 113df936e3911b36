package vm

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Accelerator names accepted by [DetectAccel].
const (
	AccelAuto = "auto"
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// Accel is the accelerator a VM runs under and why it was picked.
type Accel struct {
	// Name is "kvm" or "tcg".
	Name string
	// Reason explains the choice in words a user can check.
	Reason string
}

// Host is what accelerator detection looks at, so tests can describe a
// host without being on one. [LocalHost] reads the real machine.
type Host struct {
	// CPUInfo is the content of /proc/cpuinfo.
	CPUInfo []byte
	// KVMDevice says whether /dev/kvm can be opened read-write.
	KVMDevice bool
	// Modules are the names of loaded kernel modules.
	Modules []string
}

// LocalHost describes the machine this process runs on. Errors reading
// any part leave that part empty, which only ever steers towards TCG.
func LocalHost() Host {
	var h Host
	h.CPUInfo, _ = os.ReadFile("/proc/cpuinfo")
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
		f.Close()
		h.KVMDevice = true
	}
	// /sys/module lists built-in and loadable modules alike; /proc/modules
	// is absent on some kernels.
	if ents, err := os.ReadDir("/sys/module"); err == nil {
		for _, e := range ents {
			h.Modules = append(h.Modules, e.Name())
		}
	}
	if b, err := os.ReadFile("/proc/modules"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if name, _, _ := strings.Cut(line, " "); name != "" {
				h.Modules = append(h.Modules, name)
			}
		}
	}
	return h
}

// kvmUsable says whether KVM can run an unmodified Linux guest here, and
// why not when it cannot.
//
// /dev/kvm alone is not enough: under PVM (kvm_pvm, software nested
// virtualization without VT-x/AMD-V) the device exists, but a normal guest
// kernel's supervisor code ends up in KVM's instruction emulator, which
// fails on instructions such as xrstor and int3 or takes minutes to boot.
// Hardware virtualization shows as the vmx (Intel) or svm (AMD) CPU flag.
func (h Host) kvmUsable() (bool, string) {
	for _, m := range h.Modules {
		if m == "kvm_pvm" || filepath.Base(m) == "kvm_pvm" {
			return false, "/dev/kvm is backed by PVM (kvm_pvm loaded), which cannot run an unmodified Linux guest"
		}
	}
	if !hasCPUFlag(h.CPUInfo, "vmx") && !hasCPUFlag(h.CPUInfo, "svm") {
		if h.KVMDevice {
			return false, "/dev/kvm exists but the CPU has no vmx/svm flag (no hardware virtualization; likely PVM or nested emulation)"
		}
		return false, "no hardware virtualization (no vmx/svm CPU flag) and no /dev/kvm"
	}
	if !h.KVMDevice {
		return false, "the CPU has hardware virtualization but /dev/kvm cannot be opened (kvm module not loaded, or no permission)"
	}
	return true, "hardware virtualization (vmx/svm) and /dev/kvm available"
}

// hasCPUFlag reports whether the first "flags" line of cpuinfo lists flag.
func hasCPUFlag(cpuinfo []byte, flag string) bool {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "flags" {
			continue
		}
		for _, f := range strings.Fields(v) {
			if f == flag {
				return true
			}
		}
		return false
	}
	return false
}

// DetectAccel picks the accelerator for requested ("auto", "kvm" or
// "tcg") on host h. Asking for kvm where it cannot work is an error rather
// than a guest that hangs in the instruction emulator.
func DetectAccel(requested string, h Host) (Accel, error) {
	ok, why := h.kvmUsable()
	switch requested {
	case "", AccelAuto:
		if ok {
			return Accel{Name: AccelKVM, Reason: why}, nil
		}
		return Accel{Name: AccelTCG, Reason: "KVM not usable: " + why + "; using TCG (software emulation)"}, nil
	case AccelKVM:
		if !ok {
			return Accel{}, fmt.Errorf("--accel kvm: KVM is not usable here: %s", why)
		}
		return Accel{Name: AccelKVM, Reason: "requested; " + why}, nil
	case AccelTCG:
		return Accel{Name: AccelTCG, Reason: "requested"}, nil
	}
	return Accel{}, fmt.Errorf("--accel %q: want auto, kvm or tcg", requested)
}

// TSCkHz is the host CPU's clock in kHz as /proc/cpuinfo reports it ("cpu
// MHz"), or 0. Under TCG the guest's TSC runs at the host's rate; a
// guest kernel that cannot calibrate it (no HPET on microvm, and PIT
// calibration fails when the emulation is slow) can be told it with
// tsc_early_khz=, instead of hanging or falling back to jiffies.
func (h Host) TSCkHz() int {
	sc := bufio.NewScanner(bytes.NewReader(h.CPUInfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "cpu MHz" {
			continue
		}
		mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || mhz <= 0 || mhz > 100000 {
			return 0
		}
		return int(mhz * 1000)
	}
	return 0
}
