package volume

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"pgdata", true},
		{"a1", true},
		{"My_vol.2-x", true},
		{"0", false}, // docker wants two characters at least
		{"", false},
		{"-x", false},
		{".x", false},
		{"_x", false},
		{"a/b", false},
		{"..", false},
		{"a b", false},
		{"a:b", false},
		{"é1", false},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
	} {
		err := ValidateName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateName(%q): %v is not ErrInvalidName", tc.name, err)
		}
	}
}

// FuzzValidateName: a name the API accepts is one path element under the
// volumes directory, never "." or "..", never a temporary file's.
func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"pgdata", "..", "a/b", ".build-x", "a\x00b", "x.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidateName(name) != nil {
			return
		}
		if name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || filepath.Base(name) != name ||
			strings.HasPrefix(name, ".") || len(name) > 128 {
			t.Fatalf("accepted %q", name)
		}
	})
}

func open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "volumes"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCreateListRemove(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	v, created, err := s.Create(ctx, "data", nil)
	if err != nil || !created {
		t.Fatalf("Create: %v %v", created, err)
	}
	if fi, err := os.Stat(v.Mountpoint); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
		t.Fatalf("mountpoint %s: %v %v", v.Mountpoint, fi, err)
	}
	// Idempotent, as docker volume create.
	if _, created, err := s.Create(ctx, "data", nil); err != nil || created {
		t.Fatalf("second Create: %v %v", created, err)
	}
	if _, _, err := s.Create(ctx, "bad/name", nil); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("Create(bad/name): %v", err)
	}
	if err := os.WriteFile(filepath.Join(v.Mountpoint, "f"), make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(v.Mountpoint, "f"), filepath.Join(v.Mountpoint, "g")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Create(ctx, "other", nil); err != nil {
		t.Fatal(err)
	}
	vols, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(vols) != 2 || vols[0].Name != "data" || vols[0].Size != 1000 || vols[1].Name != "other" || vols[1].Size != 0 {
		t.Fatalf("List: %+v", vols)
	}
	if err := s.Remove(ctx, "data", false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "data"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Remove: %v", err)
	}
	if err := s.Remove(ctx, "data", false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Remove: %v", err)
	}
	// Nothing is left beside the volumes but the store's lock.
	entries, _ := os.ReadDir(s.dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{".lock", "other"}) {
		t.Errorf("left: %v", names)
	}
}

// TestInUse: rm and prune refuse a volume that an arrow names or a run
// holds, and take it once neither does.
func TestInUse(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	for _, n := range []string{"named", "mounted", "free"} {
		if _, _, err := s.Create(ctx, n, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddRef(ctx, "named", "0123abcd"); err != nil {
		t.Fatal(err)
	}
	// AddRef creates a volume that does not exist, as docker run does.
	if err := s.AddRef(ctx, "implicit", "0123abcd"); err != nil {
		t.Fatal(err)
	}
	m, err := s.Acquire(ctx, "mounted")
	if err != nil {
		t.Fatal(err)
	}
	if !m.Empty {
		t.Error("a new volume is not empty")
	}
	for _, n := range []string{"named", "implicit", "mounted"} {
		err := s.Remove(ctx, n, false)
		if !errors.Is(err, ErrInUse) {
			t.Errorf("Remove(%s): %v, want ErrInUse", n, err)
		}
		v, err := s.Get(ctx, n)
		if err != nil || !v.InUse {
			t.Errorf("Get(%s): %+v %v", n, v, err)
		}
	}
	if err := s.Remove(ctx, "named", false); err == nil || !strings.Contains(err.Error(), "0123abcd") {
		t.Errorf("the refusal does not name the arrow: %v", err)
	}
	st, err := s.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Removed, []string{"free"}) {
		t.Errorf("Prune removed %v", st.Removed)
	}
	if err := s.RemoveRef("named", "0123abcd"); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	// A second run sees what the first left.
	m2, err := s.Acquire(ctx, "implicit")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(m2.Dir, "x"), []byte("x"), 0o644)
	m2.Close()
	m3, err := s.Acquire(ctx, "implicit")
	if err != nil {
		t.Fatal(err)
	}
	if m3.Empty {
		t.Error("a volume with a file is empty")
	}
	m3.Close()
	st, err = s.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Removed, []string{"mounted", "named"}) || st.Bytes != 0 {
		t.Errorf("Prune removed %+v", st)
	}
	if err := s.Remove(ctx, "implicit", true); err != nil {
		t.Errorf("Remove with force, referenced: %v", err)
	}
}

// TestDamagedRecord: a record that is not the volume's is an error, not
// a panic or a volume of another name.
func TestDamagedRecord(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	if _, _, err := s.Create(ctx, "v1", nil); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"", "{", `{"name":"v2"}`, strings.Repeat(" ", maxRecord+1)} {
		if err := os.WriteFile(s.path("v1", "volume.json"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, "v1"); err == nil {
			t.Errorf("record %.20q: no error", body)
		}
	}
}

// TestLabels: a volume keeps the labels it was created with in its record,
// for Get and List; a second Create does not change them; labels beyond
// the bounds are refused and create nothing.
func TestLabels(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	labels := map[string]string{"com.docker.compose.project": "demo", "com.docker.compose.volume": "data", "empty": ""}
	v, created, err := s.Create(ctx, "data", labels)
	if err != nil || !created || !maps.Equal(v.Labels, labels) {
		t.Fatalf("Create = %+v, %v, %v", v, created, err)
	}
	want := maps.Clone(labels)
	labels["empty"] = "changed by the caller"
	if v, created, err := s.Create(ctx, "data", map[string]string{"other": "x"}); err != nil || created || !maps.Equal(v.Labels, want) {
		t.Fatalf("second Create = %+v, %v, %v; want the first labels", v, created, err)
	}
	got, err := s.Get(ctx, "data")
	if err != nil || !maps.Equal(got.Labels, want) {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	// Kept in volume.json: another Store over the same directory reads them.
	s2, err := Open(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	vols, err := s2.List(ctx)
	if err != nil || len(vols) != 1 || !maps.Equal(vols[0].Labels, want) {
		t.Fatalf("List = %+v, %v", vols, err)
	}
	big := map[string]string{}
	for i := range 256 {
		big[fmt.Sprint(i)] = strings.Repeat("\x01", 4000) // JSON escapes each: the largest record
	}
	if v, _, err := s.Create(ctx, "big", big); err != nil || len(v.Labels) != 256 {
		t.Fatalf("Create with the most labels allowed: %v", err)
	}
	if v, err := s.Get(ctx, "big"); err != nil || !maps.Equal(v.Labels, big) {
		t.Fatalf("Get of the largest record: %v", err)
	}
	for name, bad := range map[string]map[string]string{
		"empty key": {"": "v"},
		"huge":      {"k": strings.Repeat("v", 5000)},
		"NUL":       {"k": "a\x00"},
	} {
		if _, _, err := s.Create(ctx, "bad", bad); !errors.Is(err, ErrInvalidLabels) {
			t.Errorf("%s: Create = %v, want ErrInvalidLabels", name, err)
		}
	}
	if _, err := s.Get(ctx, "bad"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused Create left a volume: %v", err)
	}
}
