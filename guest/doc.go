// Package guest defines the wire protocol spoken between the Arrow host and
// arrow-init, the guest's PID 1.
//
// The two ends share one virtio-serial port (named [PortName] in the guest,
// a Unix socket on the host). Everything that crosses the VM boundary
// travels over it as frames: the application to run ([Spec]), its standard
// streams, signals, terminal resizes and finally its [ExitStatus].
//
// One multiplexed byte stream is used instead of a port per stream because
// a virtio-serial port reports end-of-file whenever the host side is not
// connected, which makes "the host closed stdin" indistinguishable from "the
// host has not connected yet". With frames, end of input is an explicit
// message, and the order of output relative to the exit status is exact:
// every byte the application wrote precedes its exit frame.
//
// The application is handed over after boot, never baked into the guest
// image: a guest booted ahead of time and paused can later receive any
// application, which is what templates build on.
//
// Everything arriving from the guest is untrusted: frame sizes are bounded
// by [MaxPayload] and JSON payloads are validated before use.
package guest
