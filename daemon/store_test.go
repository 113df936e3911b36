package daemon

import (
	"errors"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/arrowsys/arrow/api"
)

func recordIDs(recs []*record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.ID)
	}
	sort.Strings(out)
	return out
}

func TestStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "arrowd.db")
	s, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if recs, errs := s.all(); len(recs) != 0 || len(errs) != 0 {
		t.Fatalf("new store: %v, %v", recs, errs)
	}
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	a := &record{Arrow: api.Arrow{
		ID: "aaa", Name: "web", Created: created, State: api.Running, ExitCode: 3,
		Config: api.Config{Image: "alpine", Args: []string{"x"},
			Restart: api.RestartPolicy{Name: api.RestartOnFailure, MaxRetries: 2},
			Labels:  map[string]string{"k": "v"}},
		ShimPid: 42,
	}, ShimStart: 12345, Socket: "/run/arrow/aaa.sock", Failures: 2}
	b := &record{Arrow: api.Arrow{ID: "bbb", Name: "db", State: api.Exited}}
	for _, r := range []*record{a, b} {
		if err := s.put(r); err != nil {
			t.Fatal(err)
		}
	}
	recs, errs := s.all()
	if len(errs) != 0 || !slices.Equal(recordIDs(recs), []string{"aaa", "bbb"}) {
		t.Fatalf("all: %v, %v", recordIDs(recs), errs)
	}

	// A put replaces.
	a.State = api.Exited
	if err := s.put(a); err != nil {
		t.Fatal(err)
	}
	if err := s.delete("bbb"); err != nil {
		t.Fatal(err)
	}
	if err := s.delete("nothing"); err != nil {
		t.Fatalf("delete of a missing record: %v", err)
	}

	// A second store on the same file waits for the lock, then gives up.
	t0 := time.Now()
	s2, err := openStore(path)
	if err == nil {
		s2.close()
		t.Fatal("a second open of a store in use succeeded")
	}
	if !errors.Is(err, errLocked) {
		t.Fatalf("second open: %v, want errLocked", err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Fatalf("second open took %v", d)
	}

	// A record that does not decode is reported, not dropped silently.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketArrows).Put([]byte("bad"), []byte("{not json")); err != nil {
			return err
		}
		return tx.Bucket(bucketArrows).Put([]byte("other"), []byte(`{"id":"mismatch"}`))
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}

	// What was committed survives a reopen.
	s, err = openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	recs, errs = s.all()
	if !slices.Equal(recordIDs(recs), []string{"aaa"}) || len(errs) != 2 {
		t.Fatalf("after reopen: %v, %v", recordIDs(recs), errs)
	}
	got := recs[0]
	if got.State != api.Exited || got.Name != "web" || !got.Created.Equal(created) || got.ShimStart != 12345 ||
		got.Socket != a.Socket || got.Failures != 2 || got.ShimPid != 42 || got.Labels["k"] != "v" ||
		got.Restart != a.Restart || !slices.Equal(got.Config.Args, []string{"x"}) {
		t.Fatalf("record after reopen: %+v", got)
	}
}

func TestOpenStoreErrors(t *testing.T) {
	if _, err := openStore(filepath.Join(t.TempDir(), "missing", "arrowd.db")); err == nil || errors.Is(err, errLocked) {
		t.Fatalf("open in a missing directory: %v", err)
	}
}

// TestStoreUpgrade reads a record as an arrowd before the one description
// of an arrow wrote it, with the restart policy and labels beside the
// config: an upgrade keeps them.
func TestStoreUpgrade(t *testing.T) {
	path := filepath.Join(t.TempDir(), "arrowd.db")
	s, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	old := `{"id":"aaa","name":"web","config":{"program":"/bin/true"},"restart":{"name":"on-failure","max_retries":3},"labels":{"tier":"front"},"created":"2025-01-02T03:04:05Z","state":"exited","exit_code":0,"restarts":0,"dir":"/d","log_path":"/d/log"}`
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketArrows).Put([]byte("aaa"), []byte(old))
	}); err != nil {
		t.Fatal(err)
	}
	recs, errs := s.all()
	if len(errs) != 0 || len(recs) != 1 {
		t.Fatalf("all: %v, %v", recs, errs)
	}
	r := recs[0]
	if r.Restart.String() != "on-failure:3" || r.Labels["tier"] != "front" || r.OldRestart != nil || r.OldLabels != nil {
		t.Errorf("upgraded record: restart %v labels %v (old %v %v)", r.Restart, r.Labels, r.OldRestart, r.OldLabels)
	}
}
