package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/arrowsys/arrow/dataroot"
	"github.com/arrowsys/arrow/image/apt"
	"github.com/arrowsys/arrow/image/oci"
	"github.com/arrowsys/arrow/image/store"
	"github.com/arrowsys/arrow/run"
)

// imagesDir is the image store under Arrow's data root.
func (g *globals) imagesDir() string { return dataroot.Root(g.dataRoot()).Images() }

func newImageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Import and manage OCI images",
		Long: `Images are kept in a content-addressed store that holds every distinct
file once, whatever image or layer it came in.`,
	}
	open := func() (*store.Store, error) { return store.Open(g.imagesDir()) }

	var name string
	importCmd := &cobra.Command{
		Use:   "import SOURCE",
		Short: "Import an image: an OCI layout directory, an OCI or docker-save tarball",
		Long: `Import an image from SOURCE: an OCI image layout directory, an OCI archive
or a 'docker save' tarball (detected), or with an explicit transport:
oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:TAG].`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := os.Stat(args[0]); err != nil && !strings.Contains(args[0], ":") {
				return fmt.Errorf("import %s: %w", args[0], err)
			}
			return importImage(cmd, open, args[0], name)
		},
	}
	importCmd.Flags().StringVar(&name, "name", "", "name the image (default: the name the source carries, else the file name)")

	pull := &cobra.Command{
		Use:   "pull REFERENCE",
		Short: "Pull an image from a registry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return importImage(cmd, open, "docker://"+strings.TrimPrefix(args[0], "docker://"), name)
		},
	}
	pull.Flags().StringVar(&name, "name", "", "name the image (default: the reference)")

	ls := &cobra.Command{
		Use:   "ls",
		Short: "List images",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := open()
			if err != nil {
				return err
			}
			imgs, err := s.List(cmd.Context())
			if err != nil {
				return err
			}
			return writeImageList(cmd.OutOrStdout(), imgs)
		},
	}
	inspect := &cobra.Command{
		Use:   "inspect IMAGE",
		Short: "Show an image's record as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := open()
			if err != nil {
				return err
			}
			img, err := s.Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(img)
		},
	}
	rm := &cobra.Command{
		Use:   "rm IMAGE...",
		Short: "Remove images and their root disks (their files go with `arrow image prune`)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := open()
			if err != nil {
				return err
			}
			for _, ref := range args {
				img, err := s.Remove(cmd.Context(), ref)
				if err != nil {
					return err
				}
				fmt.Println(img.ID)
			}
			// Their root disks go now: they are rebuilt from the store
			// if the images come back.
			return pruneDisks(cmd, g)
		},
	}
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Delete stored files and blobs no image refers to, and unused root disks",
		Long: `Delete the stored files and blobs no image refers to, the root disks
(built by 'arrow run' from images) of images no longer stored, and root
disks not used for 30 days. Disks in use by a running VM stay.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := open()
			if err != nil {
				return err
			}
			st, err := s.Prune(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Printf("removed %d files and %d blobs, %s\n", st.Files, st.Blobs, humanBytes(st.Bytes))
			return pruneDisks(cmd, g)
		},
	}
	du := &cobra.Command{
		Use:   "du",
		Short: "Bytes stored against bytes the images would take unshared",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := open()
			if err != nil {
				return err
			}
			u, err := s.Usage(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Printf("images:      %d\n", u.Images)
			fmt.Printf("stored:      %s (%d files, %d blobs)\n", humanBytes(u.StoredBytes), u.Files, u.Blobs)
			fmt.Printf("unshared:    %s (what the images would take each on its own)\n", humanBytes(u.UnsharedBytes))
			if u.UnsharedBytes > 0 {
				fmt.Printf("saved:       %s (%.0f%%)\n", humanBytes(u.UnsharedBytes-u.StoredBytes),
					100*float64(u.UnsharedBytes-u.StoredBytes)/float64(u.UnsharedBytes))
			}
			fmt.Printf("reclaimable: %s (arrow image prune)\n", humanBytes(u.ReclaimableBytes))
			return nil
		},
	}
	cmd.AddCommand(importCmd, pull, ls, inspect, rm, prune, du, newImageBuildCmd(g, open))
	return cmd
}

// pruneDisks removes the root disks of images no longer stored and those
// unused for run.RootDiskMaxAge, and says so when it removed any.
func pruneDisks(cmd *cobra.Command, g *globals) error {
	st, err := run.PruneRootDisks(cmd.Context(), g.dataRoot(), run.RootDiskMaxAge)
	if err != nil {
		return err
	}
	if st.Images > 0 {
		fmt.Printf("removed %d root disks, %s\n", st.Images, humanBytes(st.Bytes))
	}
	return nil
}

func importImage(cmd *cobra.Command, open func() (*store.Store, error), src, name string) error {
	ctx := cmd.Context()
	s, err := open()
	if err != nil {
		return err
	}
	img, err := oci.Open(ctx, src, oci.Options{})
	if err != nil {
		return err
	}
	defer img.Close()
	if name == "" {
		// The name the layout's index gives the image, as ctr, podman
		// load and skopeo take it.
		if ns := img.Names(); len(ns) > 0 {
			name = ns[0]
		} else {
			name = defaultImageName(src, img.Reference())
		}
	}
	t0 := time.Now()
	rec, err := s.Import(ctx, img, name)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "imported %s (%d files, %s) in %v\n", orNone(rec.Name()), rec.Entries, humanBytes(rec.Size), time.Since(t0).Round(time.Millisecond))
	fmt.Println(rec.ID)
	return nil
}

// writeImageList writes imgs as a table with a row per name, as docker
// lists a row per tag: an image with two names is two rows with one ID,
// one with none a row named <none>.
func writeImageList(out io.Writer, imgs []store.Image) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tID\tFILES\tSIZE\tIMPORTED")
	for _, img := range imgs {
		names := img.Names
		if len(names) == 0 {
			names = []string{""}
		}
		for _, n := range names {
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", orNone(n), img.ShortID(), img.Entries,
				humanBytes(img.Size), img.Imported.Local().Format(time.DateTime))
		}
	}
	return w.Flush()
}

// defaultImageName is the reference the source carries, else the source's
// file name without extension.
func defaultImageName(src, ref string) string {
	if ref != "" && store.ValidateName(ref) == nil {
		return ref
	}
	base := filepath.Base(strings.TrimSuffix(src, "/"))
	if i := strings.Index(base, ":"); i >= 0 {
		base = filepath.Base(base[i+1:])
	}
	base = strings.TrimSuffix(strings.TrimSuffix(base, ".tar"), ".tgz")
	base = strings.ToLower(base)
	if store.ValidateName(base) == nil {
		return base
	}
	return ""
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// newImageBuildCmd is `arrow image build --apt`.
func newImageBuildCmd(g *globals, open func() (*store.Store, error)) *cobra.Command {
	var pkgList, suite, name string
	cmd := &cobra.Command{
		Use:   "build --apt PKG[,PKG...] [--suite SUITE] --name NAME",
		Short: "Build an image of Debian packages (mmdebstrap, from the host's apt sources)",
		Long: `Build an image of Debian packages with mmdebstrap, from the host's apt
sources (/etc/apt/sources.list and sources.list.d), their maintainer
scripts run, and import it into the image store, where images built this
way share their common files. The build is cached by suite, package list
and sources: building the same list again only names the image.

Exit status: 0; 127 when a package does not exist in the suite; 130 when
interrupted; 125 for any other failure. Nothing of a failed build stays.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pkgList == "" || name == "" {
				return errors.New("image build: --apt and --name are required")
			}
			pkgs, err := apt.ParsePackages(pkgList)
			if err != nil {
				return err
			}
			s, err := open()
			if err != nil {
				return err
			}
			// Ctrl-C and SIGTERM end mmdebstrap and remove the build,
			// rather than the process dying with the build half done.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			dir := dataroot.Root(g.dataRoot()).AptBuilds()
			b := &apt.Builder{Store: s, CacheDir: dir, TmpDir: dir, Progress: os.Stderr}
			t0 := time.Now()
			res, err := b.Build(ctx, apt.Request{Packages: pkgs, Suite: suite, Name: name})
			switch {
			case ctx.Err() != nil && cmd.Context().Err() == nil:
				return &run.Error{Code: 128 + int(syscall.SIGINT), Err: fmt.Errorf("image build: interrupted; nothing kept")}
			case errors.Is(err, apt.ErrNoPackage):
				return &run.Error{Code: run.ExitNotFound, Err: fmt.Errorf("image build: %w", err)}
			case err != nil:
				return fmt.Errorf("image build: %w", err)
			}
			if res.Cached {
				fmt.Fprintf(os.Stderr, "arrow: %s: cached (%s %s, built before), named in %v\n", name, res.Suite, strings.Join(pkgs, ","), time.Since(t0).Round(time.Millisecond))
			} else {
				fmt.Fprintf(os.Stderr, "arrow: built %s (%d files, %s) in %v\n", name, res.Image.Entries, humanBytes(res.Image.Size), time.Since(t0).Round(time.Second))
			}
			fmt.Println(res.Image.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&pkgList, "apt", "", "Debian packages to install, comma-separated (required)")
	cmd.Flags().StringVar(&suite, "suite", "", "Debian suite (default: the host's codename)")
	cmd.Flags().StringVar(&name, "name", "", "the image's name (required)")
	return cmd
}
