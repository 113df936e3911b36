package vm

import (
	"strings"
	"testing"
)

func TestDetectAccel(t *testing.T) {
	const (
		vmxInfo = "processor\t: 0\nflags\t\t: fpu vme vmx sse2\n"
		svmInfo = "processor\t: 0\nflags\t\t: fpu svm sse2\n"
		noVirt  = "processor\t: 0\nflags\t\t: fpu vme sse2 hypervisor\n"
	)
	tests := []struct {
		name      string
		requested string
		host      Host
		want      string // accelerator, or "" for an error
		reason    string // substring of the reason or error
	}{
		{"auto with vmx", "auto", Host{CPUInfo: []byte(vmxInfo), KVMDevice: true}, AccelKVM, "hardware virtualization"},
		{"auto with svm", "", Host{CPUInfo: []byte(svmInfo), KVMDevice: true}, AccelKVM, "vmx/svm"},
		{"auto PVM module", "auto", Host{CPUInfo: []byte(vmxInfo), KVMDevice: true, Modules: []string{"kvm", "kvm_pvm"}}, AccelTCG, "PVM"},
		{"auto kvm without vmx", "auto", Host{CPUInfo: []byte(noVirt), KVMDevice: true}, AccelTCG, "no vmx/svm"},
		{"auto nothing", "auto", Host{CPUInfo: []byte(noVirt)}, AccelTCG, "no /dev/kvm"},
		{"auto vmx no device", "auto", Host{CPUInfo: []byte(vmxInfo)}, AccelTCG, "cannot be opened"},
		{"tcg requested", "tcg", Host{CPUInfo: []byte(vmxInfo), KVMDevice: true}, AccelTCG, "requested"},
		{"kvm requested ok", "kvm", Host{CPUInfo: []byte(vmxInfo), KVMDevice: true}, AccelKVM, "requested"},
		{"kvm requested on PVM", "kvm", Host{CPUInfo: []byte(noVirt), KVMDevice: true, Modules: []string{"kvm_pvm"}}, "", "not usable"},
		{"unknown", "hvf", Host{}, "", "want auto, kvm or tcg"},
		{"flag only as substring", "auto", Host{CPUInfo: []byte("flags\t: vmxx svmm\n"), KVMDevice: true}, AccelTCG, "no vmx/svm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DetectAccel(tt.requested, tt.host)
			if tt.want == "" {
				if err == nil || !strings.Contains(err.Error(), tt.reason) {
					t.Fatalf("got %+v, %v; want error containing %q", got, err, tt.reason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != tt.want || !strings.Contains(got.Reason, tt.reason) {
				t.Fatalf("got %+v, want %s with reason containing %q", got, tt.want, tt.reason)
			}
		})
	}
}

func TestTSCkHz(t *testing.T) {
	tests := []struct {
		info string
		want int
	}{
		{"processor\t: 0\ncpu MHz\t\t: 2596.138\nflags\t: fpu\n", 2596138},
		{"cpu MHz : 3000\n", 3000000},
		{"cpu MHz : fast\n", 0},
		{"cpu MHz : -5\n", 0},
		{"flags : fpu\n", 0},
	}
	for _, tt := range tests {
		if got := (Host{CPUInfo: []byte(tt.info)}).TSCkHz(); got != tt.want {
			t.Errorf("%q: %d, want %d", tt.info, got, tt.want)
		}
	}
}
