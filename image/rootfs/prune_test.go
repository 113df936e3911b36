package rootfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// cacheImage puts a fake image for key into dir, last used age ago.
func cacheImage(t *testing.T, dir, key string, age time.Duration) string {
	t.Helper()
	p := filepath.Join(dir, ImageName(key))
	if err := os.WriteFile(p, []byte("image of "+key), 0o644); err != nil {
		t.Fatal(err)
	}
	when := time.Now().Add(-age)
	if err := os.Chtimes(p, when, when); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrune(t *testing.T) {
	const month = 30 * 24 * time.Hour
	tests := []struct {
		name   string
		keep   []string // keys kept; nil: keep func is nil
		maxAge time.Duration
		// images: key -> age; want: keys left
		images map[string]time.Duration
		held   []string
		want   []string
	}{
		{
			name:   "orphans go, wanted ones stay",
			keep:   []string{"a"},
			images: map[string]time.Duration{"a": time.Hour, "b": time.Hour},
			want:   []string{"a"},
		},
		{
			name:   "stale wanted ones go too",
			keep:   []string{"a", "b"},
			maxAge: month,
			images: map[string]time.Duration{"a": time.Hour, "b": 40 * 24 * time.Hour},
			want:   []string{"a"},
		},
		{
			name:   "age alone",
			maxAge: month,
			images: map[string]time.Duration{"new": time.Hour, "old": 40 * 24 * time.Hour},
			want:   []string{"new"},
		},
		{
			name:   "held images stay",
			keep:   []string{},
			maxAge: month,
			images: map[string]time.Duration{"a": 40 * 24 * time.Hour, "b": time.Hour},
			held:   []string{"a"},
			want:   []string{"a"},
		},
		{
			name:   "nothing to do",
			images: map[string]time.Duration{"a": 400 * 24 * time.Hour},
			want:   []string{"a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for k, age := range tt.images {
				cacheImage(t, dir, k, age)
			}
			for _, k := range tt.held {
				// Hold marks it used: age it again to show the lock alone
				// keeps it.
				h, err := Hold(filepath.Join(dir, ImageName(k)))
				if err != nil {
					t.Fatal(err)
				}
				defer h.Close()
				old := time.Now().Add(-tt.images[k])
				if err := os.Chtimes(h.Path, old, old); err != nil {
					t.Fatal(err)
				}
			}
			// Files Prune must not touch.
			other := filepath.Join(dir, "notes.txt")
			if err := os.WriteFile(other, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(dir, "sub"+imageSuffix), 0o755); err != nil {
				t.Fatal(err)
			}
			var keep func(string) bool
			if tt.keep != nil {
				keep = func(name string) bool {
					return slices.ContainsFunc(tt.keep, func(k string) bool { return ImageName(k) == name })
				}
			}
			st, err := Prune(dir, keep, tt.maxAge)
			if err != nil {
				t.Fatal(err)
			}
			var left []string
			for k := range tt.images {
				if _, err := os.Stat(filepath.Join(dir, ImageName(k))); err == nil {
					left = append(left, k)
				}
			}
			slices.Sort(left)
			if !slices.Equal(left, tt.want) {
				t.Errorf("left %v, want %v", left, tt.want)
			}
			if st.Images != len(tt.images)-len(tt.want) || st.Images > 0 && st.Bytes == 0 {
				t.Errorf("stats %+v", st)
			}
			for _, p := range []string{other, filepath.Join(dir, "sub"+imageSuffix)} {
				if _, err := os.Stat(p); err != nil {
					t.Errorf("%s: %v", p, err)
				}
			}
		})
	}
	if st, err := Prune(filepath.Join(t.TempDir(), "none"), nil, time.Hour); err != nil || st.Images != 0 {
		t.Errorf("missing cache: %+v %v", st, err)
	}
}

func TestHold(t *testing.T) {
	dir := t.TempDir()
	p := cacheImage(t, dir, "k", 40*24*time.Hour)
	d, err := Hold(p)
	if err != nil {
		t.Fatal(err)
	}
	// Holding marks it used.
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(lastUse(fi)) > time.Minute {
		t.Errorf("last use %v after Hold", lastUse(fi))
	}
	d.Close()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if _, err := Hold(p); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Hold of a missing image: %v", err)
	}
}
