// Package benchreport runs nostr-homed's benchmarks and writes the report that `make bench`
// leaves in build/bench/: report.md for people and report.json for tools.
//
// Every figure is a measurement next to a baseline measured in the same run on the same
// machine, and their ratio; absolute numbers are shown too, with units, but never alone. Where
// an issue gives a target, the figure carries it and is marked pass or miss. A miss is
// reported, never turned into a failing exit: `make bench` fails only when a benchmark could
// not run.
//
// To add a benchmark, write a func(*Env) ([]Figure, error) and append a Bench to Benchmarks
// (benchmarks.go). Go benchmarks that already report their ratios with b.ReportMetric need
// only GoBench and a few lines that pick their metrics (see casBench).
package benchreport

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Schema names the version of report.json's layout.
const Schema = "nostr-homed-bench/1"

// Measure is one measured number with its unit, e.g. 11.6 "µs/call".
type Measure struct {
	Label string  `json:"label"` // what was measured, e.g. "_nss_nostr_getpwnam_r(user0500)"
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// Target is a bound an issue sets on a figure.
type Target struct {
	// Of is what the bound applies to: "ratio" (measured / baseline) or "value" (the
	// measured value, in its unit).
	Of string `json:"of"`
	// Op is "<=" (lower is better: times) or ">=" (higher is better: fractions of native).
	Op     string  `json:"op"`
	Limit  float64 `json:"limit"`
	Source string  `json:"source"` // where it comes from, e.g. "issue 5"
}

// MaxRatio is the usual target: measured at most limit times the baseline.
func MaxRatio(limit float64, source string) *Target {
	return &Target{Of: "ratio", Op: "<=", Limit: limit, Source: source}
}

// Met reports whether f meets the target.
func (t *Target) Met(f Figure) bool {
	v := f.Ratio
	if t.Of == "value" {
		v = f.Measured.Value
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return false
	}
	if t.Op == ">=" {
		return v >= t.Limit
	}
	return v <= t.Limit
}

func (t *Target) String() string {
	op := map[string]string{"<=": "≤", ">=": "≥"}[t.Op]
	if op == "" {
		op = t.Op
	}
	if t.Of == "value" {
		return fmt.Sprintf("%s %s (%s)", op, strconv.FormatFloat(t.Limit, 'g', -1, 64), t.Source)
	}
	return fmt.Sprintf("%s %s× (%s)", op, strconv.FormatFloat(t.Limit, 'g', -1, 64), t.Source)
}

// Status of a figure.
const (
	StatusPass = "pass" // meets its target
	StatusMiss = "miss" // misses its target (reported, not a failure)
	StatusInfo = "info" // no target: shown for context
)

// Figure is one row of the report: a measurement, its same-run baseline and their ratio.
type Figure struct {
	Name     string  `json:"name"`
	Measured Measure `json:"measured"`
	Baseline Measure `json:"baseline"`
	// Ratio is Measured.Value / Baseline.Value unless the benchmark set it (for example a
	// ratio a Go benchmark reported with finer timing than its rounded absolutes). For times,
	// above 1 means slower than the baseline.
	Ratio  float64 `json:"ratio"`
	Target *Target `json:"target"`
	Status string  `json:"status"`
	Note   string  `json:"note,omitempty"`
}

// Result is what one benchmark produced.
type Result struct {
	Name      string   `json:"name"`
	About     string   `json:"about"`
	NeedsRoot bool     `json:"needs_root"`
	Seconds   float64  `json:"seconds"`
	Error     string   `json:"error,omitempty"` // the benchmark could not run
	Figures   []Figure `json:"figures"`
}

// Machine describes where the run happened.
type Machine struct {
	CPU         string `json:"cpu"`
	Cores       int    `json:"cores"`
	MemoryBytes int64  `json:"memory_bytes"`
	Kernel      string `json:"kernel"`
	OS          string `json:"os"`
	GoVersion   string `json:"go_version"`
	Date        string `json:"date"` // RFC 3339, UTC
	Commit      string `json:"commit"`
	User        string `json:"user"` // "root" or "non-root": some benchmarks need root
}

// Summary counts the figures by status.
type Summary struct {
	Figures int `json:"figures"`
	Targets int `json:"targets"`
	Pass    int `json:"pass"`
	Miss    int `json:"miss"`
	Errors  int `json:"errors"` // benchmarks that could not run
}

// Report is the whole run; its JSON form is report.json.
type Report struct {
	Schema  string   `json:"schema"`
	Machine Machine  `json:"machine"`
	Seconds float64  `json:"seconds"`
	Results []Result `json:"benchmarks"`
	Summary Summary  `json:"summary"`
	Policy  string   `json:"policy"`
}

// Policy is the sentence both forms of the report carry about misses.
const Policy = "A missed target is reported, not a failure: `make bench` exits non-zero only when a benchmark could not run."

// Finish fills every figure's ratio (where the benchmark left it zero) and status, and the
// summary.
func (r *Report) Finish() {
	r.Schema = Schema
	r.Policy = Policy
	r.Summary = Summary{}
	for i := range r.Results {
		res := &r.Results[i]
		if res.Error != "" {
			r.Summary.Errors++
		}
		for j := range res.Figures {
			f := &res.Figures[j]
			if f.Ratio == 0 {
				f.Ratio = f.Measured.Value / f.Baseline.Value
			}
			r.Summary.Figures++
			switch {
			case f.Target == nil:
				f.Status = StatusInfo
			case f.Target.Met(*f):
				f.Status = StatusPass
				r.Summary.Targets++
				r.Summary.Pass++
			default:
				f.Status = StatusMiss
				r.Summary.Targets++
				r.Summary.Miss++
			}
		}
	}
}

// WriteJSON writes the report as indented JSON. Ratios that are not finite (a zero baseline)
// are written as null rather than breaking the encoding.
func (r *Report) WriteJSON(w io.Writer) error {
	type figure Figure
	type jsonFigure struct {
		figure
		Ratio *float64 `json:"ratio"`
	}
	type jsonResult struct {
		Result
		Figures []jsonFigure `json:"figures"`
	}
	out := struct {
		*Report
		Results []jsonResult `json:"benchmarks"`
	}{Report: r}
	for _, res := range r.Results {
		jr := jsonResult{Result: res, Figures: []jsonFigure{}}
		for _, f := range res.Figures {
			jf := jsonFigure{figure: figure(f)}
			if !math.IsNaN(f.Ratio) && !math.IsInf(f.Ratio, 0) {
				v := f.Ratio
				jf.Ratio = &v
			}
			jr.Figures = append(jr.Figures, jf)
		}
		out.Results = append(out.Results, jr)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}

// WriteMarkdown writes the report for people: the machine, one table of every figure, then
// each benchmark's description and notes.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "# nostr-homed benchmark report\n\n")
	fmt.Fprintf(&b, "Every figure is a ratio to a baseline measured in the same run on this machine; the absolute\n")
	fmt.Fprintf(&b, "numbers are beside it. %s\n\n", Policy)
	fmt.Fprintf(&b, "| Machine | |\n|---|---|\n")
	fmt.Fprintf(&b, "| CPU | %s |\n| Cores | %d |\n| Memory | %s |\n| Kernel | %s |\n| OS | %s |\n| Go | %s |\n| Date | %s |\n| Commit | %s |\n| User | %s |\n| Run time | %.0f s |\n\n",
		cell(m.CPU), m.Cores, fmtBytes(m.MemoryBytes), cell(m.Kernel), cell(m.OS), cell(m.GoVersion), m.Date, cell(m.Commit), m.User, r.Seconds)
	s := r.Summary
	var root []string
	for _, res := range r.Results {
		if res.NeedsRoot {
			root = append(root, res.Name)
		}
	}
	if len(root) == 0 {
		root = []string{"none"}
	}
	fmt.Fprintf(&b, "Benchmarks that need root: %s.\n\n", strings.Join(root, ", "))
	fmt.Fprintf(&b, "**%d figures, %d with a target: %d pass, %d miss.", s.Figures, s.Targets, s.Pass, s.Miss)
	if s.Errors > 0 {
		fmt.Fprintf(&b, " %d benchmark(s) could not run.", s.Errors)
	}
	fmt.Fprintf(&b, "**\n\n")

	fmt.Fprintf(&b, "| Benchmark | Figure | Measured | Baseline | Ratio | Target | Result |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|\n")
	for _, res := range r.Results {
		if res.Error != "" {
			fmt.Fprintf(&b, "| %s | | | | | | **error**: %s |\n", res.Name, cell(res.Error))
			continue
		}
		for _, f := range res.Figures {
			target := ""
			if f.Target != nil {
				target = f.Target.String()
			}
			result := f.Status
			switch f.Status {
			case StatusPass:
				result = "pass"
			case StatusMiss:
				result = "**miss**"
			case StatusInfo:
				result = "–"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", res.Name, cell(f.Name),
				fmtMeasure(f.Measured), fmtMeasure(f.Baseline), fmtRatio(f.Ratio), target, result)
		}
	}
	fmt.Fprintf(&b, "\n")
	for _, res := range r.Results {
		fmt.Fprintf(&b, "## %s\n\n", res.Name)
		if about := strings.TrimSpace(res.About); about != "" {
			fmt.Fprintf(&b, "%s\n\n", about)
		}
		if res.NeedsRoot {
			fmt.Fprintf(&b, "Needs root.\n\n")
		}
		fmt.Fprintf(&b, "Took %.1f s.\n\n", res.Seconds)
		for _, f := range res.Figures {
			if f.Note != "" {
				fmt.Fprintf(&b, "- %s: %s\n", f.Name, f.Note)
			}
		}
		if res.Error != "" {
			fmt.Fprintf(&b, "Could not run: %s\n", res.Error)
		}
		fmt.Fprintf(&b, "\n")
	}
	_, err := io.WriteString(w, strings.TrimRight(b.String(), "\n")+"\n")
	return err
}

// cell makes s safe inside a markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.Join(strings.Fields(s), " ")
}

func fmtMeasure(m Measure) string {
	v := fmtNum(m.Value) + " " + m.Unit
	if m.Label != "" {
		v += " (" + cell(m.Label) + ")"
	}
	return v
}

func fmtRatio(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "n/a"
	}
	return fmtNum(r) + "×"
}

// fmtNum prints three significant digits, without exponent notation for everyday sizes.
func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return fmt.Sprint(v)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	case a == 0:
		return "0"
	default:
		return strconv.FormatFloat(v, 'f', 2-int(math.Floor(math.Log10(a))), 64)
	}
}

func fmtBytes(n int64) string {
	if n <= 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}

// now is replaced in tests.
var now = time.Now
