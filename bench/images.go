//go:build linux

package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"text/tabwriter"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/arrowsys/arrow/dataroot"
	"github.com/arrowsys/arrow/e2e/fixture"
)

// benchImages measures images (`go run ./bench -images`): importing a
// Debian image with python3 from a `docker save` tarball, the store's
// growth against the tarball's size, and `python3 -c pass` run from that
// image with its root disk not yet built (cold) and cached (warm), against
// the same python3 run as a host program. Everything happens in a
// temporary data root; only Arrow's kernel is shared with the user's.
func benchImages(ctx context.Context, arrowBin string, runs int) error {
	if runs < 1 {
		return fmt.Errorf("-runs %d: need at least one", runs)
	}
	su, err := newSetup(arrowBin)
	if err != nil {
		return err
	}
	arrowBin, kernel, accel := su.arrow, su.kernel, su.accel
	tree, err := fixture.DebianPython(ctx, os.Stderr)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "arrow-bench-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	// The image: the tree as a base layer and a python layer, as a
	// Dockerfile that installs python on Debian would make it.
	base, baseSt, err := fixture.Layer(tree, filepath.Join(work, "base.tar"), fixture.Not(fixture.IsPythonRuntime))
	if err != nil {
		return err
	}
	py, pySt, err := fixture.Layer(tree, filepath.Join(work, "python.tar"), fixture.IsPythonRuntime)
	if err != nil {
		return err
	}
	img, err := fixture.Image(v1.Config{
		Cmd: []string{"python3"},
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	}, base, py)
	if err != nil {
		return err
	}
	tag, err := name.NewTag("arrow.bench/debian-python:latest")
	if err != nil {
		return err
	}
	archive := filepath.Join(work, "debian-python.tar")
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		return err
	}
	fi, err := os.Stat(archive)
	if err != nil {
		return err
	}
	archiveSize := fi.Size()
	os.Remove(filepath.Join(work, "base.tar"))
	os.Remove(filepath.Join(work, "python.tar"))

	// Imports, each into an empty store. The first store is kept for
	// the runs.
	root := filepath.Join(work, "root")
	var imports []sample
	var growth, growthApparent int64
	for i := 0; i < runs; i++ {
		r := root
		if i > 0 {
			r = filepath.Join(work, fmt.Sprintf("import-%d", i))
		}
		s, err := measure(ctx, []string{arrowBin, "--root", r, "image", "import", "--name", "py", archive}, "")
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		imports = append(imports, s)
		if i == 0 {
			if growth, growthApparent, err = diskUsage(dataroot.Root(root).Images()); err != nil {
				return err
			}
		} else if err := os.RemoveAll(r); err != nil {
			return err
		}
	}

	pass := []string{"-c", "pass"}
	disks := dataroot.Root(root).RootDisks()
	contenders := []*imageContender{
		{contender: contender{name: "image, cold (root disk built)",
			argv: append([]string{arrowBin, "--root", root, "run", "--kernel", kernel, "py", "python3"}, pass...)},
			before: func() error { return removeDisks(disks) }},
		{contender: contender{name: "image, warm (root disk cached)",
			argv: append([]string{arrowBin, "--root", root, "run", "--kernel", kernel, "py", "python3"}, pass...)}},
		// /usr/bin/python3 is the host's Debian python3, the very
		// interpreter the image holds.
		{contender: contender{name: "host program",
			argv: append([]string{arrowBin, "--root", root, "run", "--kernel", kernel, "/usr/bin/python3"}, pass...)}},
	}
	for round := 0; round <= runs; round++ { // round 0 warms up
		for _, c := range contenders {
			if c.before != nil {
				if err := c.before(); err != nil {
					return err
				}
			}
			s, err := measure(ctx, c.argv, "")
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			if round > 0 {
				c.samples = append(c.samples, s)
			}
		}
	}
	diskSize, err := disksSize(disks)
	if err != nil {
		return err
	}

	imageBytes := baseSt.Bytes + pySt.Bytes
	fmt.Printf("Debian %s %s + %s image (%d files, %s; python runtime %s): median of %d runs, accelerator %s (%s)\n\n",
		fixture.Suite, fixture.Variant, fixture.Include, baseSt.Files+pySt.Files, mibs(imageBytes), mibs(pySt.Bytes),
		runs, accel.Name, accel.Reason)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	iw, im := median(imports)
	fmt.Fprintln(w, "| import\t| wall time\t| peak RSS (process tree)\t| tarball\t| store growth (disk)\t| store growth (apparent)\t| growth ÷ tarball\t| root disk (erofs)\t|")
	fmt.Fprintln(w, "|---\t|---\t|---\t|---\t|---\t|---\t|---\t|---\t|")
	fmt.Fprintf(w, "| docker-save tarball into an empty store\t| %.3f s\t| %s\t| %s\t| %s\t| %s\t| %.2f×\t| %s\t|\n",
		iw.Seconds(), mibs(im), mibs(archiveSize), mibs(growth), mibs(growthApparent),
		float64(growth)/float64(archiveSize), mibs(diskSize))
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Println()
	hw, hm := median(contenders[len(contenders)-1].samples)
	w = tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "| python3 -c pass\t| wall time\t| peak RSS (process tree)\t| this ÷ host program (time)\t| this ÷ host program (memory)\t|")
	fmt.Fprintln(w, "|---\t|---\t|---\t|---\t|---\t|")
	for _, c := range contenders {
		wt, mem := median(c.samples)
		fmt.Fprintf(w, "| %s\t| %.3f s\t| %s\t| %.2f×\t| %.2f×\t|\n", c.name, wt.Seconds(), mibs(mem),
			float64(wt)/float64(hw), float64(mem)/float64(hm))
	}
	return w.Flush()
}

// imageContender is a contender with something to do before each run.
type imageContender struct {
	contender
	before func() error
}

// removeDisks deletes the cached root disks in dir, so that the next run
// of an image builds its disk again.
func removeDisks(dir string) error {
	disks, err := filepath.Glob(filepath.Join(dir, "*.erofs"))
	for _, d := range disks {
		if err := os.Remove(d); err != nil {
			return err
		}
	}
	return err
}

// disksSize is the size of the cached root disks in dir.
func disksSize(dir string) (int64, error) {
	disks, err := filepath.Glob(filepath.Join(dir, "*.erofs"))
	var n int64
	for _, d := range disks {
		fi, err := os.Stat(d)
		if err != nil {
			return 0, err
		}
		n += fi.Size()
	}
	return n, err
}

// diskUsage is what the tree at dir takes: allocated blocks and apparent
// sizes, each inode counted once (the store hard links).
func diskUsage(dir string) (blocks, apparent int64, err error) {
	seen := map[[2]uint64]bool{}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		key := [2]uint64{st.Dev, st.Ino}
		if seen[key] {
			return nil
		}
		seen[key] = true
		blocks += st.Blocks * 512
		apparent += fi.Size()
		return nil
	})
	return blocks, apparent, err
}

func mibs(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
