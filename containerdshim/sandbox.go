package containerdshim

import (
	"context"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/arrowsys/arrow/api"
)

// Annotations CRI puts on a pod's containers' specs.
const (
	annotationContainerType = "io.kubernetes.cri.container-type"
	containerTypeSandbox    = "sandbox"
)

// isSandbox says whether a task is a CRI pod's sandbox (its "pause"
// container) rather than one of the pod's application containers.
func isSandbox(spec *specs.Spec) bool {
	return spec != nil && spec.Annotations[annotationContainerType] == containerTypeSandbox
}

// prepareSandbox is the one place where a pod sandbox task is treated
// differently from an application container: Create calls it, before
// the network and the cgroup are set up, for every task isSandbox
// names, and may change the config the sandbox's VM runs.
//
// For now a sandbox runs like any other container (its image's pause
// program in a VM of its own); pod sandboxes that hold the pod's VM are
// to be implemented here.
func (s *service) prepareSandbox(ctx context.Context, spec *specs.Spec, cfg *api.Config) error {
	return nil
}
