package podnet

// What the CRI plugin of containerd puts in the OCI specs of a pod's
// tasks, for the shim to tell a pod sandbox from a container and to
// attach a container (see the package documentation).
const (
	// ContainerTypeAnnotation is "sandbox" on a pod sandbox's task, which
	// boots no VM (see [StartPause]), and "container" on the others.
	ContainerTypeAnnotation = "io.kubernetes.cri.container-type"
	ContainerTypeSandbox    = "sandbox"
	// ResolvConfPath is where a container's spec mounts the pod's
	// resolv.conf (the mount's source is the file CRI wrote).
	ResolvConfPath = "/etc/resolv.conf"
)

// IsSandbox reports whether a task's annotations make it a pod sandbox.
func IsSandbox(annotations map[string]string) bool {
	return annotations[ContainerTypeAnnotation] == ContainerTypeSandbox
}

// OptionsFor are the Options of a container's Attach, from its spec's
// annotations (its declared ports, see [ParsePorts]) and the source of
// its spec's mount at [ResolvConfPath] (empty when it has none). runDir
// may be empty for [DefaultRunDir]. A malformed ports annotation is an
// error: the container must not start with other ports than declared.
func OptionsFor(annotations map[string]string, resolvConf, runDir string) (Options, error) {
	ports, err := ParsePorts(annotations[PortsAnnotation])
	if err != nil {
		return Options{}, err
	}
	return Options{RunDir: runDir, Ports: ports, ResolvConf: resolvConf}, nil
}
