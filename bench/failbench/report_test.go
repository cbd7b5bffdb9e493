package failbench

import (
	"bytes"
	"encoding/json"
	"image/png"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sampleReport is a report as a run of one proxied failover makes it.
func sampleReport() *Report {
	pause, proxyPause := 201.0, 199.0
	r := &Report{Backend: "kvsim", Trigger: TriggerProxied, DurationMs: 3000, Load: "2 clients",
		Requests: 1000, Errors: 2, ErrorKinds: map[string]uint64{"TRYAGAIN": 2},
		KeysVerified: 200, Benchmark: &BenchmarkReport{Command: "redis-benchmark", Completed: 1,
			Runs: []BenchmarkRun{{StartMs: 0, EndMs: 900, Tests: map[string]BenchmarkTest{"SET": {RPS: 1000, P99Ms: 1, MaxMs: 2}}}}},
		Failovers: []FailoverReport{{Seq: 0, Shard: 0, Trigger: TriggerProxied, From: node{"a", "127.0.0.1:1"}, To: node{"b", "127.0.0.1:2"},
			StartMs: 1000, EndMs: 1400, ServerPauseMs: &pause, ProxyPauseMs: &proxyPause, Held: 7,
			Phases:     []Phase{{1000, eventSent}, {1100, masterPrefix + "pause_write"}, {1301, masterPrefix + "success"}},
			WriteStall: Latencies{Requests: 10, P99: 210, Max: 230}}},
	}
	for i := range 30 {
		r.Plot = append(r.Plot, PlotPoint{AtMs: float64(i) * 100, RPS: float64(1000 + i), P99Ms: float64(i % 7)})
		r.Held = append(r.Held, HeldSample{AtMs: float64(i) * 100, Held: int64(i % 3)})
	}
	r.Plot[12].RPS = 0 // a stall: no p99 drawn there
	return r
}

func TestReportPrint(t *testing.T) {
	var out bytes.Buffer
	sampleReport().Print(&out)
	text := out.String()
	assert.Contains(t, text, "FAIL: 2 client errors (Go load), 0 redis-benchmark errors, 0 lost acknowledged writes of 200 keys read back")
	assert.Contains(t, text, "errors by kind: TRYAGAIN 2")
	assert.Contains(t, text, "write stall on shard 0: max 230.0 ms, p99 210.0 ms over 10 writes; server pause 201 ms (proxy saw 199 ms); 7 requests held")
	assert.Contains(t, text, "phases (ms from the trigger): +0 trigger sent, +100 master pause_write, +301 master success")
	assert.Contains(t, text, "0.0-0.9s: SET 1000 req/s")
}

func TestReportJSON(t *testing.T) {
	r := sampleReport()
	raw, err := json.Marshal(r)
	require.NoError(t, err)
	var back Report
	require.NoError(t, json.Unmarshal(raw, &back))
	assert.Equal(t, r.Failovers, back.Failovers)
	assert.Equal(t, r.Plot, back.Plot)
}

func TestReportPNG(t *testing.T) {
	if testing.Short() {
		t.Skip("rasterizing takes seconds, over ten under -race; runs without -short")
	}
	r := sampleReport()
	var img bytes.Buffer
	require.NoError(t, r.WritePNG(&img))
	decoded, err := png.Decode(&img)
	require.NoError(t, err)
	assert.Equal(t, 1200, decoded.Bounds().Dx()) // 900 points at 96 dpi
	// An interrupted run may have nothing to draw.
	require.NoError(t, (&Report{}).WritePNG(&bytes.Buffer{}))
}
