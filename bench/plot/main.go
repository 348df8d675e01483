// Command plot draws latency against load from rocket-bench results.
//
// Its input is a file of JSON lines, each the last stdout line of one
// rocket-bench run (a scenario at one offered rate). For each scenario it
// writes a PNG with the achieved throughput (ops_per_sec) on the x axis and
// the p50 and p99 latencies on the y axis (for fanout, the room size on the
// x axis and the time until every member has a message on the y axis; the
// loopback runs, the machine's floor, are drawn on the fanout plot as the
// time to write one message to that many sockets with nothing else done):
//
//	cd bench/plot && go run . -in ../../docs/bench-runs.jsonl -out ../../docs
//
// writes docs/latency-echo.png, docs/latency-fanout.png and so on.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// result is the part of a rocket-bench JSON line that the plot uses.
type result struct {
	Scenario  string  `json:"scenario"`
	Conns     int     `json:"conns"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
}

func main() {
	in := flag.String("in", "", "file of rocket-bench JSON lines")
	out := flag.String("out", ".", "directory for the PNG files")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	if in == "" {
		return fmt.Errorf("-in is required")
	}
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	byScenario := map[string][]result{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var r result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return fmt.Errorf("%s:%d: %w", in, n, err)
		}
		byScenario[r.Scenario] = append(byScenario[r.Scenario], r)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	floor := byScenario["loopback"]
	delete(byScenario, "loopback")
	sort.Slice(floor, func(i, j int) bool { return floor[i].Conns < floor[j].Conns })
	for scenario, rs := range byScenario {
		sort.Slice(rs, func(i, j int) bool { return xOf(rs[i]) < xOf(rs[j]) })
		path := filepath.Join(out, "latency-"+scenario+".png")
		var fl []result
		if scenario == "fanout" {
			fl = floor
		}
		if err := drawPlot(scenario, rs, fl, path); err != nil {
			return fmt.Errorf("%s: %w", scenario, err)
		}
		fmt.Println("wrote", path)
	}
	return nil
}

// drawPlot plots rs and, when given, the loopback floor (x: connections).
func drawPlot(scenario string, rs, floor []result, path string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Rocket %s: latency against load (%d connections)", scenario, rs[0].Conns)
	p.X.Label.Text = "achieved throughput (operations per second)"
	p.Y.Label.Text = "latency (ms)"
	if scenario == "fanout" {
		p.Title.Text = "Rocket fanout: time until every member has a message, against room size"
		p.X.Label.Text = "room members (one node)"
		p.Y.Label.Text = "all delivered (ms)"
	}
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	for _, s := range []struct {
		name  string
		rs    []result
		value func(result) float64
		color color.RGBA
	}{
		{"p50", rs, func(r result) float64 { return r.P50 }, color.RGBA{R: 67, G: 56, B: 202, A: 255}},
		{"p99", rs, func(r result) float64 { return r.P99 }, color.RGBA{R: 220, G: 38, B: 38, A: 255}},
		{"floor p50: raw writes, no server (rocket-bench loopback)", floor, func(r result) float64 { return r.P50 }, color.RGBA{R: 100, G: 116, B: 139, A: 255}},
	} {
		if len(s.rs) == 0 {
			continue
		}
		pts := make(plotter.XYs, len(s.rs))
		for i, r := range s.rs {
			pts[i].X, pts[i].Y = xOf(r), s.value(r)
		}
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		line.Color, points.Color = s.color, s.color
		p.Add(line, points)
		p.Legend.Add(s.name, line, points)
	}
	if scenario == "fanout" {
		// DESIGN section 6: one message to 10,000 members in under 20 ms.
		target, err := plotter.NewScatter(plotter.XYs{{X: 10000, Y: 20}})
		if err != nil {
			return err
		}
		target.Color = color.RGBA{G: 150, A: 255}
		target.Shape = draw.CrossGlyph{}
		target.Radius = vg.Points(5)
		p.Add(target)
		p.Legend.Add("target: 10,000 members in 20 ms", target)
	}
	p.Legend.Top = true
	p.Legend.Left = true
	return p.Save(8*vg.Inch, 4.5*vg.Inch, path)
}

// xOf is the load of a run: the room size for fan-out, the throughput
// otherwise.
func xOf(r result) float64 {
	if r.Scenario == "fanout" || r.Scenario == "loopback" {
		return float64(r.Conns)
	}
	return r.OpsPerSec
}
