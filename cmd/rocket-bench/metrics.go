package main

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Metrics read from the nodes' /metrics (Prometheus text format).
const (
	metricRSS     = "process_resident_memory_bytes"
	metricCPU     = "process_cpu_seconds_total"
	metricClients = "rocket_clients"
	metricHeap    = "go_memstats_heap_inuse_bytes"
	metricGoros   = "go_goroutines"
)

var metricsClient = &http.Client{Timeout: 5 * time.Second}

// sample is the value of each metric, summed over its label sets.
type sample map[string]float64

// scrape reads one /metrics page.
func scrape(url string) (sample, error) {
	resp, err := metricsClient.Get(url)
	if err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read metrics: %s answered %s", url, resp.Status)
	}
	s := sample{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		if i := strings.IndexByte(name, '{'); i >= 0 {
			// Labels may hold spaces: the value follows the closing brace.
			j := strings.LastIndexByte(line, '}')
			if j < 0 {
				continue
			}
			name, rest = line[:i], strings.TrimSpace(line[j+1:])
		}
		valueText, _, _ := strings.Cut(rest, " ") // an optional timestamp may follow
		v, err := strconv.ParseFloat(valueText, 64)
		if err != nil {
			continue
		}
		s[name] += v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics from %s: %w", url, err)
	}
	return s, nil
}

// scrapeAll reads every node's metrics and sums them.
func scrapeAll(urls []string) (sample, error) {
	total := sample{}
	for _, u := range urls {
		s, err := scrape(u)
		if err != nil {
			return nil, err
		}
		for k, v := range s {
			total[k] += v
		}
	}
	return total, nil
}

// cpuMeter measures the CPU the nodes used over a window, when the tool
// has their metrics.
type cpuMeter struct {
	urls  []string
	start time.Time
	cpu   float64
	ok    bool
}

func startCPU(urls []string) *cpuMeter {
	m := &cpuMeter{urls: urls, start: time.Now()}
	if len(urls) == 0 {
		return m
	}
	s, err := scrapeAll(urls)
	if err != nil {
		return m
	}
	m.cpu, m.ok = s[metricCPU], true
	return m
}

// cores returns the average number of cores the nodes used since start,
// or nil when unknown.
func (m *cpuMeter) cores() *float64 {
	if !m.ok {
		return nil
	}
	s, err := scrapeAll(m.urls)
	if err != nil {
		return nil
	}
	c := (s[metricCPU] - m.cpu) / time.Since(m.start).Seconds()
	return &c
}
