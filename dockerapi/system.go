package dockerapi

import (
	"net/http"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moby/moby/api/types/system"

	"github.com/arrowsys/arrow/api"
)

// ping answers /_ping as dockerd does: "OK", with the version headers
// (set by ServeHTTP) that clients negotiate from.
func (s *Server) ping(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache, no-store, must-revalidate")
	w.Header().Set("Pragma", "no-cache")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if r.Method == http.MethodHead {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("OK"))
}

// version names Arrow as the server: `docker version` shows it.
func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	info := s.b.Info()
	writeJSON(w, http.StatusOK, system.VersionResponse{
		Platform:      system.PlatformInfo{Name: "Arrow " + s.opts.Version},
		Version:       s.opts.Version,
		APIVersion:    MaxVersion,
		MinAPIVersion: MinVersion,
		Os:            runtime.GOOS,
		Arch:          runtime.GOARCH,
		GoVersion:     runtime.Version(),
		KernelVersion: hostKernel(),
		Components: []system.ComponentVersion{{
			Name:    "Arrow",
			Version: s.opts.Version,
			Details: map[string]string{"Accelerator": info.Accel, "ApiVersion": MaxVersion, "MinAPIVersion": MinVersion},
		}},
	})
}

// info answers /info: the counts and the host, and Arrow as the runtime.
func (s *Server) info(w http.ResponseWriter, r *http.Request) {
	in := s.b.Info()
	all := s.b.List(true)
	var running, paused, stopped int
	for _, a := range all {
		switch {
		case a.Paused:
			paused++
		case a.State == api.Running || a.State == api.Starting || a.State == api.Restarting:
			running++
		default:
			stopped++
		}
	}
	images := 0
	if st, err := s.opts.Images(); err == nil {
		if list, err := st.List(r.Context()); err == nil {
			images = len(list)
		}
	}
	host, _ := os.Hostname()
	var si unix.Sysinfo_t
	_ = unix.Sysinfo(&si)
	cgroupVersion := strings.TrimPrefix(in.Cgroups, "v")
	writeJSON(w, http.StatusOK, system.Info{
		ID:                host,
		Containers:        len(all),
		ContainersRunning: running,
		ContainersPaused:  paused,
		ContainersStopped: stopped,
		Images:            images,
		Driver:            "arrow",
		DriverStatus:      [][2]string{{"Store", "content-addressed, one copy of every file"}},
		MemoryLimit:       in.Cgroups != "",
		CPUCfsQuota:       in.Cgroups != "",
		PidsLimit:         in.Cgroups != "",
		SystemTime:        time.Now().Format(time.RFC3339Nano),
		LoggingDriver:     "json-file",
		CgroupDriver:      "cgroupfs",
		CgroupVersion:     cgroupVersion,
		KernelVersion:     hostKernel(),
		OperatingSystem:   "Arrow (one microVM per container, " + in.Accel + ")",
		OSType:            "linux",
		Architecture:      runtime.GOARCH,
		NCPU:              runtime.NumCPU(),
		MemTotal:          int64(si.Totalram) * int64(si.Unit),
		DockerRootDir:     s.opts.Root,
		Name:              host,
		ServerVersion:     s.opts.Version,
		Runtimes:          map[string]system.RuntimeWithStatus{"arrow": {}},
		DefaultRuntime:    "arrow",
		Isolation:         "",
		SecurityOptions:   []string{"name=microvm", "name=seccomp,profile=arrow-jailer"},
		Warnings:          nil,
	})
}

// build is out of scope: the error names the way in.
func (s *Server) build(w http.ResponseWriter, r *http.Request) {
	lacks(w, "docker build: build the image with buildah, podman or docker elsewhere, then docker load it (or push it to a registry and docker pull it)")
}

func hostKernel() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}
