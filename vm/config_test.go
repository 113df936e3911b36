package vm

import (
	"strings"
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
		{"kernel by descriptor", nil, "-kernel", []string{"/proc/self/fd/6"}},
		{"initrd by descriptor", nil, "-initrd", []string{"/proc/self/fd/7"}},
		{"quiet cmdline", nil, "-append", []string{"console=ttyS0 reboot=t panic=-1 no_timer_check rdinit=/init quiet"}},
		{"verbose cmdline", func(c *Config) { c.Verbose = true; c.Cmdline = "arrow.debug" }, "-append", []string{"console=ttyS0 reboot=t panic=-1 no_timer_check rdinit=/init arrow.debug"}},
		{"channels by fd", nil, "-chardev", []string{"socket,id=console,fd=3", "socket,id=control,fd=4", "socket,id=qmp,fd=5"}},
		{"control port", nil, "-device", []string{"virtio-serial-device,max_ports=2", "virtserialport,chardev=control,name=arrow.0", "virtio-rng-device"}},
		{"sandbox", nil, "-sandbox", []string{"on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"}},
		{"jailed: privilege calls left to the jail's filter (-runas needs them)", func(c *Config) { c.Jail = &Jail{} }, "-sandbox", []string{"on,obsolete=deny,spawn=deny,resourcecontrol=deny"}},
		{"jailed: -runas is the jail's, not in the machine's arguments", func(c *Config) { c.Jail = &Jail{} }, "-runas", nil},
		{"drives by fd set", withDevices, "-add-fd", []string{"fd=8,set=1", "fd=9,set=2"}},
		{"drive options", withDevices, "-drive", []string{
			"if=none,id=drive0,node-name=drive0-raw,file=/dev/fdset/1,format=raw,cache=writeback,readonly=on",
			"if=none,id=drive1,node-name=drive1-raw,file=/dev/fdset/2,format=raw,cache=none",
		}},
		{"devices", withDevices, "-device", []string{
			"virtio-serial-device,max_ports=2", "virtserialport,chardev=control,name=arrow.0", "virtio-rng-device",
			"virtio-blk-device,drive=drive0,serial=root", "virtio-blk-device,drive=drive1",
			"vhost-user-fs-device,chardev=share0,tag=data",
			"virtio-9p-device,fsdev=share1,mount_tag=nine",
			"vhost-user-fs-device,chardev=share2,tag=more",
		}},
		{"vhost-user sockets after the drives, 9p shares have none", withDevices, "-chardev", []string{
			"socket,id=console,fd=3", "socket,id=control,fd=4", "socket,id=qmp,fd=5",
			"socket,id=share0,fd=10", "socket,id=share2,fd=11",
		}},
		{"9p share, comma escaped, read-only", withDevices, "-fsdev", []string{"local,id=share1,path=/srv/a,,b,security_model=none,readonly=on"}},
		{"virtiofs needs shared memory", withDevices, "-object", []string{"memory-backend-memfd,id=mem,size=256M,share=on"}},
		{"virtiofs machine", withDevices, "-M", []string{"microvm,x-option-roms=off,acpi=off,memory-backend=mem"}},
		{"virtiofs needs modern virtio-mmio", withDevices, "-global", []string{"virtio-mmio.force-legacy=false"}},
		{"9p alone: plain memory", func(c *Config) { c.Shares = []Share{{Tag: "nine", Path: "/srv", FS: Share9P}} }, "-object", nil},
		{"9p alone: legacy virtio-mmio", func(c *Config) { c.Shares = []Share{{Tag: "nine", Path: "/srv", FS: Share9P}} }, "-global", nil},
		{"drive alone: plain memory", func(c *Config) { c.Drives = []Drive{{Path: "/i.img"}} }, "-object", nil},
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

// withDevices gives a config two drives and three shares of both kinds.
func withDevices(c *Config) {
	c.Drives = []Drive{
		{Path: "/cache/root.erofs", Serial: "root", ReadOnly: true},
		{Path: "/dev/sdz", Cache: "none"},
	}
	c.Shares = []Share{
		{Tag: "data", Path: "/srv/data", FS: ShareVirtiofs},
		{Tag: "nine", Path: "/srv/a,b", FS: Share9P, ReadOnly: true},
		{Tag: "more", Path: "/srv/more", FS: ShareVirtiofs, ReadOnly: true},
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
		{"devices", withDevices, ""},
		{"six devices", func(c *Config) { withDevices(c); c.Drives = append(c.Drives, Drive{Path: "/a"}) }, ""},
		{"seven devices", func(c *Config) { withDevices(c); c.Drives = append(c.Drives, Drive{Path: "/a"}, Drive{Path: "/b"}) }, "room for 6"},
		{"seven devices with ACPI", func(c *Config) {
			withDevices(c)
			c.ACPI = true
			c.Drives = append(c.Drives, Drive{Path: "/a"}, Drive{Path: "/b"})
		}, ""},
		{"relative drive", func(c *Config) { c.Drives = []Drive{{Path: "root.img"}} }, "not absolute"},
		{"no drive path", func(c *Config) { c.Drives = []Drive{{}} }, "not absolute"},
		{"bad serial", func(c *Config) { c.Drives = []Drive{{Path: "/a", Serial: "a,b"}} }, "serial"},
		{"long serial", func(c *Config) { c.Drives = []Drive{{Path: "/a", Serial: strings.Repeat("s", 21)}} }, "serial"},
		{"serial twice", func(c *Config) { c.Drives = []Drive{{Path: "/a", Serial: "s"}, {Path: "/b", Serial: "s"}} }, "used twice"},
		{"two drives without serial", func(c *Config) { c.Drives = []Drive{{Path: "/a"}, {Path: "/b"}} }, ""},
		{"bad cache", func(c *Config) { c.Drives = []Drive{{Path: "/a", Cache: "fast"}} }, "cache mode"},
		{"share tag with comma", func(c *Config) { c.Shares = []Share{{Tag: "a,b", Path: "/s", FS: ShareVirtiofs}} }, "share tag"},
		{"share tag too long", func(c *Config) { c.Shares = []Share{{Tag: strings.Repeat("t", 37), Path: "/s", FS: ShareVirtiofs}} }, "share tag"},
		{"share no transport", func(c *Config) { c.Shares = []Share{{Tag: "t", Path: "/s"}} }, "transport"},
		{"share relative", func(c *Config) { c.Shares = []Share{{Tag: "t", Path: "s", FS: Share9P}} }, "not absolute"},
		{"share NUL", func(c *Config) { c.Shares = []Share{{Tag: "t", Path: "/s\x00", FS: Share9P}} }, "NUL"},
		{"share tag twice", func(c *Config) {
			c.Shares = []Share{{Tag: "t", Path: "/s", FS: Share9P}, {Tag: "t", Path: "/u", FS: ShareVirtiofs}}
		}, "used twice"},
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
