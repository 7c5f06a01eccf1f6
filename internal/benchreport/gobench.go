package benchreport

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// GoRuns holds the metrics of `go test -bench` runs: for each benchmark name (without the
// -GOMAXPROCS suffix), one map from unit to value per run (-count).
type GoRuns map[string][]map[string]float64

// GoBench runs `go test -run '^$' -bench PATTERN -benchtime BENCHTIME -count COUNT PKG` and
// parses its result lines.
func GoBench(e *Env, pkg, pattern, benchtime string, count int) (GoRuns, error) {
	out, err := e.Command(nil, e.Go, "test", "-run", "^$", "-bench", pattern,
		"-benchtime", benchtime, "-count", strconv.Itoa(count), pkg)
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, out)
	}
	runs := ParseGoBench(string(out))
	if len(runs) == 0 {
		return nil, fmt.Errorf("go test %s -bench %s printed no results:\n%s", pkg, pattern, out)
	}
	return runs, nil
}

// ParseGoBench parses the result lines of `go test -bench` output:
//
//	BenchmarkPut1MiB-2   20   5418071 ns/op   193.53 MB/s   8.020 cas/plain
func ParseGoBench(out string) GoRuns {
	runs := GoRuns{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		m := map[string]float64{"iterations": mustFloat(f[1])}
		ok := true
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				ok = false
				break
			}
			m[f[i+1]] = v
		}
		if ok {
			runs[name] = append(runs[name], m)
		}
	}
	return runs
}

func mustFloat(s string) float64 {
	v, _ := strconv.ParseFloat(s, 64)
	return v
}

// Median returns the median over the runs of benchmark name's metric unit.
func (g GoRuns) Median(name, unit string) (float64, error) {
	var vs []float64
	for _, m := range g[name] {
		if v, ok := m[unit]; ok {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return 0, fmt.Errorf("%s reported no %q", name, unit)
	}
	return median(vs), nil
}

// Medians returns Median for each unit, or the first error.
func (g GoRuns) Medians(name string, units ...string) ([]float64, error) {
	out := make([]float64, len(units))
	for i, u := range units {
		v, err := g.Median(name, u)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
