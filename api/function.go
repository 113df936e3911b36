package api

import (
	"errors"
	"fmt"
	"time"
)

// Function limits and defaults.
const (
	DefaultFunctionTimeout      = 30.0 // seconds
	MaxFunctionTimeout          = 900.0
	DefaultFunctionBodyBytes    = 6 << 20
	MaxFunctionBodyBytes        = 64 << 20
	DefaultFunctionInstances    = 8
	MaxFunctionInstances        = 64
	DefaultFunctionIdleTimeout  = 60.0 // seconds
	MaxFunctionConcurrency      = 64
	FunctionLabel               = "arrow.function"
	functionHandlerStdio        = "stdio"
	functionHandlerHTTP         = "http"
	maxFunctionIdleTimeoutHours = 24
)

// FunctionConfig describes a function: its handler, what it is given,
// and how its invocations run.
//
// A handler either reads the request's body on its standard input and
// writes the response to its standard output, exiting 0 on success (the
// default), or serves HTTP on HTTPPort in its guest. Arrow starts it
// once, waits until it is ready (it blocks reading its input, or accepts
// connections on its port), and saves it as an application snapshot:
// every instance is a clone of that snapshot, initialized already.
type FunctionConfig struct {
	// Config is what runs, as an arrow's: the image or program and its
	// arguments, environment, memory, CPUs, network (user or none).
	Config Config `json:"config"`
	// HTTPPort, when not 0, is the guest port the handler serves HTTP
	// on; 0 means a handler of standard input and output.
	HTTPPort int `json:"http_port,omitempty"`
	// Timeout bounds an invocation, in seconds (504 past it);
	// [DefaultFunctionTimeout] when 0.
	Timeout float64 `json:"timeout,omitempty"`
	// MaxBodyBytes bounds the request's body and the response's (413
	// and 502 past it); [DefaultFunctionBodyBytes] when 0.
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`
	// KeepWarm runs invocations in instances kept for IdleTimeout after
	// their last one, rather than in a fresh clone each. An HTTP
	// handler's instance serves Concurrency invocations at once; a
	// handler of standard input serves one, and a new one is made ready
	// while the function is warm.
	KeepWarm bool `json:"keep_warm,omitempty"`
	// MaxInstances bounds the function's instances, and so (with
	// Concurrency) its invocations at once: one more is refused with
	// 429. [DefaultFunctionInstances] when 0.
	MaxInstances int `json:"max_instances,omitempty"`
	// Concurrency is how many invocations an HTTP handler's kept-warm
	// instance serves at once; 1 when 0.
	Concurrency int `json:"concurrency,omitempty"`
	// IdleTimeout, in seconds, ends a kept-warm instance that served
	// nothing for that long: an idle function has no instance (scale to
	// zero). [DefaultFunctionIdleTimeout] when 0.
	IdleTimeout float64 `json:"idle_timeout,omitempty"`
}

// FunctionCreateRequest is the body of POST /v1/functions.
type FunctionCreateRequest struct {
	Name string `json:"name"`
	FunctionConfig
}

// Function describes a function.
type Function struct {
	Name string `json:"name"`
	FunctionConfig
	// Handler is "stdio" or "http".
	Handler string    `json:"handler"`
	Created time.Time `json:"created"`
	// Snapshot is the application snapshot its instances are clones of.
	Snapshot string `json:"snapshot"`
	// Instances are the instances running now.
	Instances int `json:"instances"`
}

// Defaults fills in the zero fields.
func (f *FunctionConfig) Defaults() {
	if f.Timeout == 0 {
		f.Timeout = DefaultFunctionTimeout
	}
	if f.MaxBodyBytes == 0 {
		f.MaxBodyBytes = DefaultFunctionBodyBytes
	}
	if f.MaxInstances == 0 {
		f.MaxInstances = DefaultFunctionInstances
	}
	if f.Concurrency == 0 {
		f.Concurrency = 1
	}
	if f.IdleTimeout == 0 {
		f.IdleTimeout = DefaultFunctionIdleTimeout
	}
}

// HandlerKind is "http" or "stdio".
func (f *FunctionConfig) HandlerKind() string {
	if f.HTTPPort > 0 {
		return functionHandlerHTTP
	}
	return functionHandlerStdio
}

// Validate checks a function's configuration, its defaults filled in.
func (f *FunctionConfig) Validate() error {
	c := f.Config
	switch {
	case c.Snapshot != "":
		return errors.New("function: its handler is an image or program, not a snapshot")
	case c.Service != "":
		return errors.New("function: a service is not a handler")
	case c.Stdin || c.TTY || c.ReadyPort != 0 || c.ReadyOnInput || len(c.Ports) > 0:
		return errors.New("function: stdin, tty, ready port and published ports are the function's to set")
	case len(c.Volumes) > 0:
		return errors.New("function: no volumes: its instances are clones of a snapshot")
	case c.Restart.Name != "" && c.Restart.Name != RestartNo:
		return errors.New("function: no restart policy: an invocation that fails is the caller's to retry")
	case c.Network != "" && c.Network != "user" && c.Network != "none":
		return fmt.Errorf("function: network %q: want user or none", c.Network)
	case f.HTTPPort < 0 || f.HTTPPort > 65535:
		return fmt.Errorf("function: HTTP port %d: want 1 to 65535", f.HTTPPort)
	case f.HTTPPort > 0 && c.Network == "none":
		return errors.New("function: an HTTP handler needs the user network")
	case !(f.Timeout > 0 && f.Timeout <= MaxFunctionTimeout):
		return fmt.Errorf("function: timeout %v s: want more than 0, at most %v", f.Timeout, MaxFunctionTimeout)
	case f.MaxBodyBytes < 1 || f.MaxBodyBytes > MaxFunctionBodyBytes:
		return fmt.Errorf("function: max body %d bytes: want 1 to %d", f.MaxBodyBytes, MaxFunctionBodyBytes)
	case f.MaxInstances < 1 || f.MaxInstances > MaxFunctionInstances:
		return fmt.Errorf("function: max instances %d: want 1 to %d", f.MaxInstances, MaxFunctionInstances)
	case f.Concurrency < 1 || f.Concurrency > MaxFunctionConcurrency:
		return fmt.Errorf("function: concurrency %d: want 1 to %d", f.Concurrency, MaxFunctionConcurrency)
	case f.Concurrency > 1 && (f.HTTPPort == 0 || !f.KeepWarm):
		return errors.New("function: concurrency above 1 is for a kept-warm HTTP handler")
	case !(f.IdleTimeout > 0 && f.IdleTimeout <= maxFunctionIdleTimeoutHours*3600):
		return fmt.Errorf("function: idle timeout %v s: want more than 0, at most a day", f.IdleTimeout)
	}
	return c.Validate()
}

// Validate checks the request: a valid name and configuration.
func (r *FunctionCreateRequest) Validate() error {
	if !ValidName(r.Name) {
		return fmt.Errorf("function name %.80q: want letters, digits and _.- (starting with a letter or digit), at most 128 characters", r.Name)
	}
	r.Defaults()
	return r.FunctionConfig.Validate()
}
