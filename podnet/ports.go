package podnet

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// PortsAnnotation is the annotation in which kubelet hands a container's
// declared ports to the runtime, as JSON:
// [{"name":"http","containerPort":80,"protocol":"TCP"}, ...].
const PortsAnnotation = "io.kubernetes.container.ports"

// Limits on the ports annotation: it comes from the pod's spec, which any
// user who may create pods writes.
const (
	maxPortsAnnotation = 64 << 10
	maxPorts           = 1024
)

// Protocols of a [Port].
const (
	TCP = "tcp"
	UDP = "udp"
)

// Port is a port a container declared: connections to the pod IP on it
// go to that container.
type Port struct {
	Port  uint16
	Proto string // TCP or UDP
}

func (p Port) String() string { return fmt.Sprintf("%d/%s", p.Port, p.Proto) }

// ParsePorts reads the value of the [PortsAnnotation]: TCP and UDP ports,
// deduplicated and sorted. An empty value declares none. SCTP ports are
// left out: the pod's table forwards TCP and UDP only. Anything malformed
// (not a JSON list of objects, a port out of 1 to 65535, an unknown
// protocol, more than 1024 entries or 64 KiB) is an error, so that a
// container never runs with ports other than those its pod declared.
func ParsePorts(annotation string) ([]Port, error) {
	if strings.TrimSpace(annotation) == "" {
		return nil, nil
	}
	if len(annotation) > maxPortsAnnotation {
		return nil, fmt.Errorf("annotation %s: %d bytes, want at most %d", PortsAnnotation, len(annotation), maxPortsAnnotation)
	}
	var decl []struct {
		ContainerPort *int64 `json:"containerPort"`
		Protocol      string `json:"protocol"`
	}
	if err := json.Unmarshal([]byte(annotation), &decl); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", PortsAnnotation, err)
	}
	if len(decl) > maxPorts {
		return nil, fmt.Errorf("annotation %s: %d ports, want at most %d", PortsAnnotation, len(decl), maxPorts)
	}
	var ports []Port
	for i, d := range decl {
		if d.ContainerPort == nil {
			return nil, fmt.Errorf("annotation %s: entry %d has no containerPort", PortsAnnotation, i)
		}
		if *d.ContainerPort < 1 || *d.ContainerPort > 65535 {
			return nil, fmt.Errorf("annotation %s: entry %d: containerPort %d, want 1 to 65535", PortsAnnotation, i, *d.ContainerPort)
		}
		var proto string
		switch strings.ToUpper(d.Protocol) {
		case "", "TCP": // Kubernetes' default
			proto = TCP
		case "UDP":
			proto = UDP
		case "SCTP":
			continue
		default:
			return nil, fmt.Errorf("annotation %s: entry %d: protocol %q, want TCP, UDP or SCTP", PortsAnnotation, i, d.Protocol)
		}
		ports = append(ports, Port{Port: uint16(*d.ContainerPort), Proto: proto})
	}
	slices.SortFunc(ports, comparePorts)
	return slices.Compact(ports), nil
}

func comparePorts(a, b Port) int {
	if a.Port != b.Port {
		return int(a.Port) - int(b.Port)
	}
	return strings.Compare(a.Proto, b.Proto)
}
