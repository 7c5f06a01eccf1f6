package benchreport

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

// Main is the nostr-homed-bench command: it runs the benchmarks, writes OUT/report.md and
// OUT/report.json, prints the markdown, and returns the exit status: 0 when every benchmark
// ran (whether or not it met its target), 1 when one could not run, 2 for bad usage.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nostr-homed-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := fs.String("root", ".", "repository `dir` (holds go.mod)")
	build := fs.String("build", "build", "build `dir` holding the artifacts (relative to -root)")
	out := fs.String("out", "", "report `dir` (default BUILD/bench)")
	goCmd := fs.String("go", "go", "go `command`")
	only := fs.String("only", "", "comma-separated benchmark `names` to run (default all: "+names()+")")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "nostr-homed-bench: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return 2
	}
	rootAbs, err := filepath.Abs(*root)
	if err != nil {
		fmt.Fprintln(stderr, "nostr-homed-bench:", err)
		return 2
	}
	if _, err := os.Stat(filepath.Join(rootAbs, "go.mod")); err != nil {
		fmt.Fprintf(stderr, "nostr-homed-bench: %s is not the repository root (no go.mod)\n", rootAbs)
		return 2
	}
	buildAbs := *build
	if !filepath.IsAbs(buildAbs) {
		buildAbs = filepath.Join(rootAbs, buildAbs)
	}
	outDir := *out
	if outDir == "" {
		outDir = filepath.Join(buildAbs, "bench")
	}
	var sel []string
	if *only != "" {
		sel = strings.Split(*only, ",")
	}
	// SIGINT or SIGTERM cancels the run: the running benchmark stops at its next check and
	// cleans up (mounts, daemons, PAM files); the rest are not run. A second signal kills.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }()
	rep, err := Run(ctx, Benchmarks, Options{
		Root: rootAbs, Build: buildAbs, Go: *goCmd, Only: sel,
		Logf: func(f string, a ...any) { fmt.Fprintf(stderr, f+"\n", a...) },
	})
	if err != nil {
		fmt.Fprintln(stderr, "nostr-homed-bench:", err)
		return 2
	}
	if err := WriteFiles(rep, outDir); err != nil {
		fmt.Fprintln(stderr, "nostr-homed-bench:", err)
		return 1
	}
	rep.WriteMarkdown(stdout)
	fmt.Fprintf(stderr, "wrote %s and %s\n", filepath.Join(outDir, "report.md"), filepath.Join(outDir, "report.json"))
	if rep.Summary.Errors > 0 {
		fmt.Fprintf(stderr, "nostr-homed-bench: %d benchmark(s) could not run\n", rep.Summary.Errors)
		return 1
	}
	return 0
}

// WriteFiles writes dir/report.md and dir/report.json.
func WriteFiles(rep *Report, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range []struct {
		name  string
		write func(io.Writer) error
	}{{"report.md", rep.WriteMarkdown}, {"report.json", rep.WriteJSON}} {
		var b strings.Builder
		if err := f.write(&b); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func names() string {
	var n []string
	for _, b := range Benchmarks {
		n = append(n, b.Name)
	}
	return strings.Join(n, ",")
}
