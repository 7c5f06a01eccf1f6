package benchreport

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Env is what a benchmark may use.
type Env struct {
	Ctx   context.Context
	Root  string // repository root (go.mod)
	Build string // build directory, absolute (the artifacts `make build` made)
	Go    string // go command
	Tmp   string // a scratch directory of the benchmark's own, removed afterwards
	Logf  func(format string, args ...any)
}

// Command runs name with args in the repository root and returns its stdout; stderr is
// included in the error.
func (e *Env) Command(env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(e.Ctx, name, args...)
	cmd.Dir = e.Root
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Artifact returns the path of a built artifact, or an error saying to build it.
func (e *Env) Artifact(name string) (string, error) {
	p := filepath.Join(e.Build, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s is missing: run `make build` (or `make bench`, which builds it)", p)
	}
	return p, nil
}

// Bench is one benchmark of the report.
type Bench struct {
	Name      string // short, e.g. "nss"
	About     string // what it measures against what, and why that baseline (markdown)
	NeedsRoot bool   // skipped with an error when not root
	Run       func(*Env) ([]Figure, error)
}

// Options configures Run.
type Options struct {
	Root, Build, Go string
	Only            []string // benchmark names to run; empty means all
	Logf            func(format string, args ...any)
}

// Run runs the benchmarks in order (those named in opts.Only, or all) and returns the
// finished report. A benchmark that fails is recorded with its error; the others still run.
func Run(ctx context.Context, benches []Bench, opts Options) (*Report, error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if opts.Go == "" {
		opts.Go = "go"
	}
	start := now()
	rep := &Report{Machine: CollectMachine(ctx, opts.Root, opts.Go)}
	for _, name := range opts.Only {
		if !slices.ContainsFunc(benches, func(b Bench) bool { return b.Name == name }) {
			return nil, fmt.Errorf("no benchmark named %q", name)
		}
	}
	for _, b := range benches {
		if len(opts.Only) > 0 && !slices.Contains(opts.Only, b.Name) {
			continue
		}
		res := Result{Name: b.Name, About: b.About, NeedsRoot: b.NeedsRoot}
		t0 := time.Now()
		logf("bench %s: running", b.Name)
		if err := ctx.Err(); err != nil {
			res.Error = "not run: " + err.Error()
		} else if b.NeedsRoot && os.Geteuid() != 0 {
			res.Error = "needs root"
		} else {
			tmp, err := os.MkdirTemp("", "nostr-homed-bench-"+b.Name+"-")
			if err != nil {
				return nil, err
			}
			env := &Env{Ctx: ctx, Root: opts.Root, Build: opts.Build, Go: opts.Go, Tmp: tmp,
				Logf: func(f string, a ...any) { logf("bench "+b.Name+": "+f, a...) }}
			figs, err := b.Run(env)
			os.RemoveAll(tmp)
			if err != nil {
				res.Error = err.Error()
			}
			res.Figures = figs
		}
		res.Seconds = time.Since(t0).Seconds()
		logf("bench %s: done in %.1f s", b.Name, res.Seconds)
		rep.Results = append(rep.Results, res)
	}
	rep.Seconds = now().Sub(start).Seconds()
	rep.Finish()
	return rep, nil
}

// CollectMachine describes this machine from /proc, uname, the go command and git. Whatever
// cannot be found reads "unknown".
func CollectMachine(ctx context.Context, root, goCmd string) Machine {
	m := Machine{
		CPU:       "unknown",
		Cores:     runtime.NumCPU(),
		Kernel:    "unknown",
		OS:        "unknown",
		GoVersion: runtime.Version() + " (harness)",
		Date:      now().UTC().Format(time.RFC3339),
		Commit:    "unknown",
		User:      "non-root",
	}
	if os.Geteuid() == 0 {
		m.User = "root"
	}
	if v := procField("/proc/cpuinfo", "model name"); v != "" {
		m.CPU = v
	}
	if v := procField("/proc/meminfo", "MemTotal"); v != "" {
		// "16374892 kB"
		if f := strings.Fields(v); len(f) == 2 && f[1] == "kB" {
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				m.MemoryBytes = n << 10
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	run := func(name string, args ...string) string {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	if v := run(goCmd, "env", "GOVERSION"); v != "" {
		m.GoVersion = v
	}
	if c := run("git", "rev-parse", "HEAD"); c != "" {
		m.Commit = c
		if st := run("git", "status", "--porcelain"); st != "" {
			m.Commit += " (with uncommitted changes)"
		}
	}
	return m
}

// procField returns the value of the first "key : value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
