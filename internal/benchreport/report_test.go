package benchreport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func sampleReport() *Report {
	return &Report{
		Machine: Machine{CPU: "Test CPU | 9000", Cores: 2, MemoryBytes: 4 << 30, Kernel: "6.1.0", OS: "Debian",
			GoVersion: "go1.26.8", Date: "2026-01-02T03:04:05Z", Commit: "abc123", User: "root"},
		Seconds: 12,
		Results: []Result{
			{Name: "nss", About: "about nss", Figures: []Figure{
				{Name: "hit", Measured: Measure{"nostr a", 6, "µs/call"}, Baseline: Measure{"files root", 2, "µs/call"},
					Target: MaxRatio(3, "issue 5"), Note: "exactly at the target"},
				{Name: "slow", Measured: Measure{"nostr b", 9, "µs/call"}, Baseline: Measure{"files root", 2, "µs/call"},
					Target: MaxRatio(3, "issue 5")},
				{Name: "miss path", Measured: Measure{"nostr c", 1, "µs/call"}, Baseline: Measure{"files c", 4, "µs/call"}},
			}},
			{Name: "fs", NeedsRoot: true, Figures: []Figure{
				{Name: "seq read", Measured: Measure{"mount", 800, "MB/s"}, Baseline: Measure{"native", 1000, "MB/s"},
					Target: &Target{Of: "ratio", Op: ">=", Limit: 0.9, Source: "issue 3"}},
				{Name: "explicit ratio", Measured: Measure{"x", 10, "ms"}, Baseline: Measure{"y", 5, "ms"}, Ratio: 1.5,
					Target: &Target{Of: "value", Op: "<=", Limit: 150, Source: "issue 5"}},
				{Name: "zero baseline", Measured: Measure{"x", 1, "ms"}, Baseline: Measure{"y", 0, "ms"},
					Target: MaxRatio(3, "issue 9")},
			}},
			{Name: "broken", Error: "devstack is missing"},
		},
	}
}

func TestFinishRatiosAndTargets(t *testing.T) {
	r := sampleReport()
	r.Finish()
	want := []struct {
		ratio  float64
		status string
	}{
		{3, StatusPass},           // 6/2 = 3, target <= 3: the bound itself passes
		{4.5, StatusMiss},         // 9/2
		{0.25, StatusInfo},        // no target
		{0.8, StatusMiss},         // 800/1000 >= 0.9 fails
		{1.5, StatusPass},         // ratio kept as given; the value 10 <= 150 passes
		{math.Inf(1), StatusMiss}, // a zero baseline never passes
	}
	var got []Figure
	for _, res := range r.Results {
		got = append(got, res.Figures...)
	}
	if len(got) != len(want) {
		t.Fatalf("%d figures, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].Ratio != w.ratio || got[i].Status != w.status {
			t.Errorf("%s: ratio %v status %s, want %v %s", got[i].Name, got[i].Ratio, got[i].Status, w.ratio, w.status)
		}
	}
	wantSum := Summary{Figures: 6, Targets: 5, Pass: 2, Miss: 3, Errors: 1}
	if r.Summary != wantSum {
		t.Errorf("summary %+v, want %+v", r.Summary, wantSum)
	}
	if r.Schema != Schema || r.Policy != Policy {
		t.Errorf("schema %q policy %q", r.Schema, r.Policy)
	}
	// Finish is idempotent.
	r.Finish()
	if r.Summary != wantSum {
		t.Errorf("second Finish: summary %+v", r.Summary)
	}
}

func TestMarkdown(t *testing.T) {
	r := sampleReport()
	r.Finish()
	var b bytes.Buffer
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"# nostr-homed benchmark report\n",
		Policy,
		"| CPU | Test CPU \\| 9000 |", // a pipe in a value does not break the table
		"| Cores | 2 |",
		"| Memory | 4.0 GiB |",
		"| Kernel | 6.1.0 |",
		"| Go | go1.26.8 |",
		"| Date | 2026-01-02T03:04:05Z |",
		"| Commit | abc123 |",
		"Benchmarks that need root: fs.\n",
		"**6 figures, 5 with a target: 2 pass, 3 miss. 1 benchmark(s) could not run.**",
		"| Benchmark | Figure | Measured | Baseline | Ratio | Target | Result |\n|---|---|---|---|---|---|---|\n",
		"| nss | hit | 6.00 µs/call (nostr a) | 2.00 µs/call (files root) | 3.00× | ≤ 3× (issue 5) | pass |\n",
		"| nss | slow | 9.00 µs/call (nostr b) | 2.00 µs/call (files root) | 4.50× | ≤ 3× (issue 5) | **miss** |\n",
		"| nss | miss path | 1.00 µs/call (nostr c) | 4.00 µs/call (files c) | 0.250× |  | – |\n",
		"| fs | seq read | 800 MB/s (mount) | 1000 MB/s (native) | 0.800× | ≥ 0.9× (issue 3) | **miss** |\n",
		"| fs | explicit ratio | 10.0 ms (x) | 5.00 ms (y) | 1.50× | ≤ 150 (issue 5) | pass |\n",
		"| fs | zero baseline | 1.00 ms (x) | 0 ms (y) | n/a | ≤ 3× (issue 9) | **miss** |\n",
		"| broken | | | | | | **error**: devstack is missing |\n",
		"## nss\n\nabout nss\n",
		"- hit: exactly at the target\n",
		"## fs\n\nNeeds root.\n",
		"Could not run: devstack is missing\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q\n--- markdown:\n%s", want, md)
		}
	}
	// Every table row has the header's 7 cells.
	for _, l := range strings.Split(md, "\n") {
		if strings.HasPrefix(l, "| nss |") || strings.HasPrefix(l, "| fs |") {
			if n := strings.Count(strings.ReplaceAll(l, `\|`, ""), "|"); n != 8 {
				t.Errorf("row has %d separators, want 8: %s", n, l)
			}
		}
	}
}

func TestJSONSchema(t *testing.T) {
	r := sampleReport()
	r.Finish()
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b.String())
	}
	keys := func(v any) []string {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%v is not an object", v)
		}
		var k []string
		for key := range m {
			k = append(k, key)
		}
		slices.Sort(k)
		return k
	}
	check := func(what string, got, want []string) {
		t.Helper()
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s keys %v, want %v", what, got, want)
		}
	}
	check("top", keys(doc), []string{"schema", "machine", "seconds", "benchmarks", "summary", "policy"})
	if doc["schema"] != Schema {
		t.Errorf("schema %v", doc["schema"])
	}
	check("machine", keys(doc["machine"]), []string{"cpu", "cores", "memory_bytes", "kernel", "os", "go_version", "date", "commit", "user"})
	check("summary", keys(doc["summary"]), []string{"figures", "targets", "pass", "miss", "errors"})
	benches := doc["benchmarks"].([]any)
	if len(benches) != 3 {
		t.Fatalf("%d benchmarks", len(benches))
	}
	check("benchmark", keys(benches[0]), []string{"name", "about", "needs_root", "seconds", "figures"})
	check("failed benchmark", keys(benches[2]), []string{"name", "about", "needs_root", "seconds", "figures", "error"})
	if figs := benches[2].(map[string]any)["figures"].([]any); len(figs) != 0 {
		t.Errorf("failed benchmark has figures %v", figs)
	}
	figs := benches[0].(map[string]any)["figures"].([]any)
	check("figure", keys(figs[0]), []string{"name", "measured", "baseline", "ratio", "target", "status", "note"})
	check("figure without note", keys(figs[1]), []string{"name", "measured", "baseline", "ratio", "target", "status"})
	check("measure", keys(figs[0].(map[string]any)["measured"]), []string{"label", "value", "unit"})
	check("target", keys(figs[0].(map[string]any)["target"]), []string{"of", "op", "limit", "source"})
	f0 := figs[0].(map[string]any)
	if f0["ratio"] != 3.0 || f0["status"] != "pass" {
		t.Errorf("figure 0: ratio %v status %v", f0["ratio"], f0["status"])
	}
	if figs[2].(map[string]any)["target"] != nil {
		t.Errorf("a figure without a target has target %v, want null", figs[2].(map[string]any)["target"])
	}
	zero := benches[1].(map[string]any)["figures"].([]any)[2].(map[string]any)
	if v, ok := zero["ratio"]; !ok || v != nil {
		t.Errorf("an infinite ratio is %v (present %v), want null", v, ok)
	}

	// It reads back into the same types.
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Summary != r.Summary || back.Results[0].Figures[1].Ratio != 4.5 || back.Machine != r.Machine {
		t.Errorf("round trip: %+v", back)
	}
}

func TestParseGoBench(t *testing.T) {
	out := `goos: linux
cpu: AMD EPYC
BenchmarkPut1MiB-2          	      20	   5418071 ns/op	 193.53 MB/s	   3172470 cas-ns/put	         8.020 cas/plain
BenchmarkPut1MiB-2          	      20	   5539991 ns/op	 189.27 MB/s	   3119780 cas-ns/put	         7.678 cas/plain
BenchmarkPut1MiB-2          	      20	   5323105 ns/op	 196.99 MB/s	   2845536 cas-ns/put	         7.002 cas/plain
BenchmarkReadAt/4KiB-2   	  100	  1234 ns/op
BenchmarkBroken-2  some text
PASS
ok  	github.com/nostr-homed/nostr-homed/internal/cas	1.926s
`
	g := ParseGoBench(out)
	if len(g["BenchmarkPut1MiB"]) != 3 || len(g["BenchmarkReadAt/4KiB"]) != 1 || len(g) != 2 {
		t.Fatalf("parsed %v", g)
	}
	if v, err := g.Median("BenchmarkPut1MiB", "cas/plain"); err != nil || v != 7.678 {
		t.Errorf("median cas/plain = %v, %v", v, err)
	}
	if v, _ := g.Median("BenchmarkPut1MiB", "iterations"); v != 20 {
		t.Errorf("iterations %v", v)
	}
	if _, err := g.Medians("BenchmarkPut1MiB", "ns/op", "no-such-unit"); err == nil {
		t.Error("a missing unit is not an error")
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median of an even count = %v", m)
	}
}

func TestRunRecordsErrorsAndKeepsGoing(t *testing.T) {
	benches := []Bench{
		{Name: "fails", Run: func(*Env) ([]Figure, error) { return nil, errors.New("boom") }},
		{Name: "works", Run: func(e *Env) ([]Figure, error) {
			if _, err := os.Stat(e.Tmp); err != nil {
				return nil, err
			}
			return []Figure{{Name: "f", Measured: Measure{"a", 2, "s"}, Baseline: Measure{"b", 1, "s"}, Target: MaxRatio(3, "t")}}, nil
		}},
		{Name: "skipped", Run: func(*Env) ([]Figure, error) { t.Error("ran a benchmark not selected"); return nil, nil }},
	}
	root, _ := filepath.Abs("../..")
	rep, err := Run(context.Background(), benches, Options{Root: root, Only: []string{"fails", "works"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 2 || rep.Results[0].Error != "boom" || rep.Results[1].Figures[0].Status != StatusPass {
		t.Errorf("results %+v", rep.Results)
	}
	if rep.Summary.Errors != 1 || rep.Summary.Pass != 1 {
		t.Errorf("summary %+v", rep.Summary)
	}
	if rep.Machine.Cores < 1 || rep.Machine.Date == "" {
		t.Errorf("machine %+v", rep.Machine)
	}
	if _, err := Run(context.Background(), benches, Options{Root: root, Only: []string{"nope"}}); err == nil {
		t.Error("an unknown benchmark name is not an error")
	}

	dir := t.TempDir()
	if err := WriteFiles(rep, dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"report.md", "report.json"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}
