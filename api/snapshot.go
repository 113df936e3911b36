package api

import (
	"fmt"
	"time"
)

// SnapshotCreateRequest is the body of POST /v1/snapshots: save the
// running arrow Arrow, once it is ready, as the application snapshot
// Name.
type SnapshotCreateRequest struct {
	Arrow string `json:"arrow"`
	Name  string `json:"name"`
	// Signal, when not 0, is sent to the application of every clone
	// once the clone is unique (its own entropy, machine ID, host name,
	// MAC and clock): the application's hook to draw again what it drew
	// from randomness before the snapshot.
	Signal int `json:"signal,omitempty"`
}

// Validate checks the request's fields.
func (r *SnapshotCreateRequest) Validate() error {
	switch {
	case r.Arrow == "":
		return fmt.Errorf("snapshot: no arrow")
	case !ValidName(r.Name):
		return fmt.Errorf("snapshot name %.80q: want letters, digits and _.- (starting with a letter or digit), at most 128 characters", r.Name)
	case r.Signal < 0 || r.Signal > 64:
		return fmt.Errorf("snapshot: signal %d: want 1 to 64", r.Signal)
	}
	return nil
}

// Snapshot describes an application snapshot.
type Snapshot struct {
	Name string `json:"name"`
	// Arrow is the ID of the arrow it was taken of; Config what that
	// arrow ran, which its clones run.
	Arrow  string `json:"arrow"`
	Config Config `json:"config"`
	// MemoryMiB and CPUs are its machine's, every clone's.
	MemoryMiB int       `json:"memory_mib"`
	CPUs      int       `json:"cpus"`
	Signal    int       `json:"signal,omitempty"`
	Created   time.Time `json:"created"`
	// SaveSeconds is how long the arrow was paused to be saved;
	// BuildSeconds how long the whole snapshot took.
	SaveSeconds  float64 `json:"save_seconds"`
	BuildSeconds float64 `json:"build_seconds"`
	// MemoryBytes is the size of its memory file on disk (what was
	// written of it).
	MemoryBytes int64 `json:"memory_bytes"`
}
