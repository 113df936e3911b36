package vm

import (
	"strings"
	"syscall"
	"testing"
)

func testConfig() Config {
	return Config{Kernel: "/k/vmlinux", Initrd: "/c/init.cpio", MemoryMiB: 256, CPUs: 2, Accel: Accel{Name: AccelTCG}}
}

// argValue returns the value following flag in args, for each occurrence.
func argValues(args []string, flag string) []string {
	var vs []string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			vs = append(vs, args[i+1])
		}
	}
	return vs
}

func TestArgs(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		flag   string
		want   []string // every value of flag, in order
	}{
		{"machine", nil, "-M", []string{"microvm,x-option-roms=off,acpi=off"}},
		{"machine with ACPI", func(c *Config) { c.ACPI = true }, "-M", []string{"microvm,x-option-roms=off,acpi=on"}},
		{"tcg", nil, "-accel", []string{"tcg"}},
		{"tcg cpu", nil, "-cpu", []string{"max"}},
		{"kvm", func(c *Config) { c.Accel.Name = AccelKVM }, "-accel", []string{"kvm"}},
		{"kvm cpu", func(c *Config) { c.Accel.Name = AccelKVM }, "-cpu", []string{"host"}},
		{"memory", nil, "-m", []string{"256"}},
		{"smp", nil, "-smp", []string{"2"}},
		{"kernel", nil, "-kernel", []string{"/k/vmlinux"}},
		{"initrd", nil, "-initrd", []string{"/c/init.cpio"}},
		{"quiet cmdline", nil, "-append", []string{"console=ttyS0 reboot=t panic=-1 rdinit=/init quiet"}},
		{"verbose cmdline", func(c *Config) { c.Verbose = true; c.Cmdline = "arrow.debug" }, "-append", []string{"console=ttyS0 reboot=t panic=-1 rdinit=/init arrow.debug"}},
		{"channels by fd", nil, "-chardev", []string{"socket,id=console,fd=3", "socket,id=control,fd=4", "socket,id=qmp,fd=5"}},
		{"control port", nil, "-device", []string{"virtio-serial-device,max_ports=2", "virtserialport,chardev=control,name=arrow.0", "virtio-rng-device"}},
		{"sandbox", nil, "-sandbox", []string{"on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"}},
		{"no -runas: it would clear the parent-death signal", func(c *Config) { c.RunAs = &syscall.Credential{Uid: 65534, Gid: 65534} }, "-runas", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig()
			if tt.mutate != nil {
				tt.mutate(&c)
			}
			got := argValues(c.Args(), tt.flag)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("%s: got %q, want %q", tt.flag, got, tt.want)
			}
		})
	}
	args := testConfig().Args()
	for _, flag := range []string{"-nodefaults", "-no-user-config", "-no-reboot"} {
		if len(argValues(append(args, ""), flag)) == 0 {
			t.Errorf("%s missing from %q", flag, args)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"ok", func(*Config) {}, ""},
		{"no kernel", func(c *Config) { c.Kernel = "" }, "kernel"},
		{"no initrd", func(c *Config) { c.Initrd = "" }, "initramfs"},
		{"tiny memory", func(c *Config) { c.MemoryMiB = 8 }, "memory 8 MiB"},
		{"no cpus", func(c *Config) { c.CPUs = 0 }, "cpus 0"},
		{"many cpus", func(c *Config) { c.CPUs = 1000 }, "cpus 1000"},
		{"no accel", func(c *Config) { c.Accel = Accel{} }, "accelerator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig()
			tt.mutate(&c)
			err := c.Validate()
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}
