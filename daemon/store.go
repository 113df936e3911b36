package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/run"
)

// record is what the daemon keeps of one arrow on disk: the API's view
// plus what it needs to find the arrow's shim again after a restart.
type record struct {
	api.Arrow
	// ShimStart is the shim's start time in clock ticks since boot
	// (/proc/PID/stat field 22): with ShimPid it tells the shim from an
	// unrelated process that reused its PID.
	ShimStart uint64 `json:"shim_start,omitempty"`
	// Socket is the shim's socket.
	Socket string `json:"socket,omitempty"`
	// Failures counts consecutive short runs (under stableRun), for the
	// restart back-off.
	Failures int `json:"failures,omitempty"`
	// Launching is set, with State Starting, from before a shim is
	// started for a run until the shim is recorded (ShimPid): a daemon
	// that finds it set knows its predecessor died in between, and that
	// a shim may exist that nothing else names (see recoverLaunch).
	Launching bool `json:"launching,omitempty"`
	// Tap is how the arrow's runs join its bridge network.
	Tap *run.TapAttachment `json:"tap,omitempty"`
	// Owner is the client that created the arrow: every start checks the
	// host paths of its config with the authority of its creator (see
	// HostPathPolicy). A record without one is held to the allow list.
	Owner *Peer `json:"owner,omitempty"`

	// OldRestart and OldLabels are where an arrowd before the one
	// description of an arrow (api.Config) kept the restart policy and
	// labels; load moves them into Config, so an upgrade keeps them.
	OldRestart *api.RestartPolicy `json:"restart,omitempty"`
	OldLabels  map[string]string  `json:"labels,omitempty"`
}

// upgrade moves what an older arrowd recorded outside the config into it.
func (r *record) upgrade() {
	if r.OldRestart != nil && r.Config.Restart.Name == "" {
		r.Config.Restart = *r.OldRestart
	}
	if r.OldLabels != nil && r.Config.Labels == nil {
		r.Config.Labels = r.OldLabels
	}
	r.OldRestart, r.OldLabels = nil, nil
}

// store keeps records in a bbolt database. Every change is one committed
// transaction (fsynced), so a daemon killed at any moment leaves either the
// old record or the new one.
type store struct {
	db *bolt.DB
}

var bucketArrows = []byte("arrows")

// errLocked means another daemon holds the database.
var errLocked = errors.New("another arrowd is using this data root")

func openStore(path string) (*store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("%s: %w", path, errLocked)
		}
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketArrows)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("init state %s: %w", path, err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

func (s *store) put(r *record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketArrows).Put([]byte(r.ID), b)
	})
}

func (s *store) delete(id string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketArrows).Delete([]byte(id))
	})
}

// all returns every record. A record that does not decode (written by a
// future version, or damaged) is reported, not dropped silently.
func (s *store) all() ([]*record, []error) {
	var (
		out  []*record
		errs []error
	)
	_ = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketArrows).ForEach(func(k, v []byte) error {
			var r record
			if err := json.Unmarshal(v, &r); err != nil || r.ID != string(k) {
				errs = append(errs, fmt.Errorf("state record %q: unreadable (%v)", k, err))
				return nil
			}
			r.upgrade()
			out = append(out, &r)
			return nil
		})
	})
	return out, errs
}
