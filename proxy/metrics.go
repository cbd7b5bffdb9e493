package proxy

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"kvproxy/failover"
	"kvproxy/router"
)

// Prometheus metrics: a Collector that reads, at scrape time, the counters
// INFO reads: the server's stats and request counters (cmdstats.go), the
// router's Stats and NodeStats, the holds' Report. Every label value is a
// constant or a node's address: no metric child is made per request.

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("kvproxy_"+name, help, labels, nil)
}

var (
	descClients             = desc("client_connections", "Client connections open now.")
	descConnectionsTotal    = desc("client_connections_received_total", "Client connections accepted since start.")
	descClientRefusals      = desc("client_connections_rejected_total", "Client connections turned away, by reason.", "reason")
	descClientDisconnects   = desc("client_disconnections_total", "Clients disconnected by the proxy, by reason.", "reason")
	descAuthFailures        = desc("auth_failures_total", "Failed AUTH and HELLO AUTH attempts.")
	descCommands            = desc("commands_processed_total", "Commands the proxy processed.")
	descPubSubPauses        = desc("pubsub_output_limit_pauses_total", "Times a subscriber's pending output reached the Pub/Sub output limit.")
	descPubSubPeak          = desc("pubsub_peak_output_bytes", "Most output ever pending for one subscriber.")
	descRedirects           = desc("backend_redirects_total", "Redirect replies from backends, by kind.", "kind")
	descBounces             = desc("backend_redirect_bounces_total", "Redirects not followed because they bounced back; the request was sent again after a reload.")
	descRefused             = desc("backend_refusals_total", "Replies proving a command did not run (TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN, READONLY).")
	descResent              = desc("backend_resent_total", "Requests sent again after a refusal or a failed send.")
	descParked              = desc("backend_parked_total", "Requests that waited for room on their backend connection.")
	descBackendErrors       = desc("backend_errors_total", "Backend failures, by kind.", "kind")
	descProbes              = desc("backend_probes_total", "Liveness probes sent to backends.")
	descProbeFailures       = desc("backend_probe_failures_total", "Probes not answered in time, by reason (unresponsive, busy running a script).", "reason")
	descDeclaredDead        = desc("backend_declared_dead_total", "Times a backend stayed unresponsive for the dead timeout and its connections were closed.")
	descReloads             = desc("topology_reloads_total", "Topology reloads.")
	descReloadFailures      = desc("topology_reload_failures_total", "Topology reloads that failed.")
	descEpoch               = desc("topology_epoch", "The cluster's epoch at the last topology reload.")
	descNodeConns           = desc("backend_connections", "Backend connections by node and state.", "node", "state")
	descNodeInFlight        = desc("backend_inflight_requests", "Requests sent or queued to a node and not yet answered.", "node")
	descNodeParked          = desc("backend_parked_requests", "Requests waiting for room on a node's connections.", "node")
	descNodeQueuedBytes     = desc("backend_queued_bytes", "Bytes of the requests in flight to a node.", "node")
	descNodeMaster          = desc("backend_master", "1 when the node serves slots in the routing table.", "node")
	descNodeOutage          = desc("backend_in_outage", "1 while the router follows the node's outage.", "node")
	descHeld                = desc("hold_requests_total", "Requests held through a failover or outage.")
	descHoldExits           = desc("hold_exits_total", "Held requests that left their hold, by outcome.", "outcome")
	descHoldFull            = desc("hold_full_total", "Requests refused instead of held: the hold was full.")
	descHeldNow             = desc("held_requests", "Requests held now.")
	descHoldLongest         = desc("hold_longest_wait_seconds", "Longest wait of a request that left a hold.")
	descHandovers           = desc("handovers_total", "Master handovers followed to their end, by master and result.", "master", "result")
	descHandoverPause       = desc("handover_longest_pause_seconds", "Longest write pause observed in a master's handovers.", "master")
	descOutages             = desc("backend_outages_total", "Times a master was unreachable and its requests held.", "master")
	descFailoversReported   = desc("proxy_failovers_reported_total", "Failovers the proxy started that the topology authority recorded.")
	descFailoversUnreported = desc("proxy_failovers_unreported", "Failovers the proxy started that the topology authority has not recorded.")
	descRequests            = desc("requests_total", "Client commands answered, by command class and result (ok or the error reply's prefix).", "class", "result")
	descRequestDuration     = desc("request_duration_seconds", "Time from reading a client's commands to writing their replies, by command class; a pipelined command counts its whole chunk's time.", "class")
	descRequestsRejected    = desc("client_requests_rejected_total", "Client connections closed by the protocol guard for a bad request, by reason.", "reason")
	descHoldWait            = desc("hold_duration_seconds", "How long held requests waited before leaving their hold.")
	descHandoverPauses      = desc("handover_pause_seconds", "Write pause observed in each handover followed to its end, by result.", "result")
	descReportFailures      = desc("controller_report_failures_total", "Failed attempts to tell the topology authority of a failover.")
)

// metricsCollector is the proxy's prometheus.Collector.
type metricsCollector struct{ srv *Server }

func (c metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c metricsCollector) Collect(ch chan<- prometheus.Metric) {
	srv := c.srv
	st := &srv.stats
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descClients, float64(st.connectedClients.Load()))
	counter(descConnectionsTotal, float64(st.connectionsReceived.Load()))
	counter(descClientRefusals, float64(st.rejectedConnections.Load()), "maxclients")
	counter(descClientDisconnects, float64(st.outputLimitDisconnections.Load()), "output_limit")
	counter(descClientDisconnects, float64(st.pubsubOutputLimitDisconnections.Load()), "pubsub_output_limit")
	counter(descAuthFailures, float64(st.authFailures.Load()))
	counter(descCommands, float64(st.commandsProcessed.Load()))
	counter(descPubSubPauses, float64(st.pubsubOutputLimitPauses.Load()))
	gauge(descPubSubPeak, float64(st.pubsubPeakOutput.Load()))
	counter(descFailoversReported, float64(st.handoversReported.Load()))
	gauge(descFailoversUnreported, float64(st.handoversUnreported.Load()))
	counter(descReportFailures, float64(st.authorityReportFailures.Load()))
	gauge(descEpoch, float64(srv.backend.Topology().Epoch))
	tooLarge := st.rejectedRequestsTooLarge.Load()
	counter(descRequestsRejected, float64(tooLarge), "too_large")
	counter(descRequestsRejected, float64(st.rejectedRequests.Load()-tooLarge), "malformed")
	requests := srv.requests.totals()
	for class := range numClasses {
		for result := range numResults {
			counter(descRequests, float64(requests.results[class][result]), classNames[class], resultNames[result])
		}
		buckets := make(map[float64]uint64, len(latencyBounds))
		var cumulative uint64
		for i, bound := range latencyBounds {
			cumulative += uint64(requests.buckets[class][i])
			buckets[float64(bound)/1e6] = cumulative
		}
		cumulative += uint64(requests.buckets[class][len(latencyBounds)])
		ch <- prometheus.MustNewConstHistogram(descRequestDuration, cumulative,
			float64(requests.usec[class])/1e6, buckets, classNames[class])
	}

	if rs, ok := srv.backend.(interface{ Stats() router.Stats }); ok {
		rst := rs.Stats()
		counter(descRedirects, float64(rst.Moved), "moved")
		counter(descRedirects, float64(rst.Ask), "ask")
		counter(descBounces, float64(rst.Bounces))
		counter(descRefused, float64(rst.Rejected))
		counter(descResent, float64(rst.Resent))
		counter(descParked, float64(rst.Parked))
		counter(descBackendErrors, float64(rst.Lost), "write_lost")
		counter(descBackendErrors, float64(rst.Oversized), "reply_oversized")
		counter(descBackendErrors, float64(rst.DialFailures), "dial_failed")
		counter(descBackendErrors, float64(rst.ConnsLost), "connection_lost")
		counter(descProbes, float64(rst.Probes))
		counter(descProbeFailures, float64(rst.Unresponsive), "unresponsive")
		counter(descProbeFailures, float64(rst.Busy), "busy")
		counter(descDeclaredDead, float64(rst.Dead))
		counter(descReloads, float64(rst.Reloads))
		counter(descReloadFailures, float64(rst.ReloadFailures))
	}
	if ns, ok := srv.backend.(nodeStatser); ok {
		for _, n := range ns.NodeStats() {
			gauge(descNodeConns, float64(n.Up), n.Addr, "up")
			gauge(descNodeConns, float64(n.Connecting), n.Addr, "connecting")
			gauge(descNodeConns, float64(n.Down), n.Addr, "down")
			gauge(descNodeInFlight, float64(n.InFlight), n.Addr)
			gauge(descNodeParked, float64(n.Parked), n.Addr)
			gauge(descNodeQueuedBytes, float64(n.QueuedBytes), n.Addr)
			gauge(descNodeMaster, boolFloat(n.Master), n.Addr)
			gauge(descNodeOutage, boolFloat(n.InOutage), n.Addr)
		}
	}
	if srv.cfg.Handovers != nil {
		report := srv.cfg.Handovers.Report()
		t := report.Totals
		counter(descHeld, float64(t.Held))
		counter(descHoldExits, float64(t.Released), "released")
		counter(descHoldExits, float64(t.Expired), "expired")
		counter(descHoldExits, float64(t.Abandoned), "abandoned")
		counter(descHoldFull, float64(t.Full))
		gauge(descHeldNow, float64(t.HeldNow))
		gauge(descHoldLongest, t.Longest.Seconds())
		ch <- durationsHistogram(descHoldWait, &t.Waits)
		ch <- durationsHistogram(descHandoverPauses, &report.Pauses[0], "success")
		ch <- durationsHistogram(descHandoverPauses, &report.Pauses[1], "failed")
		for _, m := range report.Masters {
			counter(descHandovers, float64(m.Succeeded), m.Master, "success")
			counter(descHandovers, float64(m.Handovers-m.Succeeded), m.Master, "failed")
			gauge(descHandoverPause, m.LongestPause.Seconds(), m.Master)
			counter(descOutages, float64(m.Outages), m.Master)
		}
	}
}

// durationsHistogram is h as a Prometheus histogram.
func durationsHistogram(d *prometheus.Desc, h *failover.Durations, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(failover.DurationBounds))
	var cumulative uint64
	for i, bound := range failover.DurationBounds {
		cumulative += h.Buckets[i]
		buckets[bound.Seconds()] = cumulative
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum.Seconds(), buckets, labels...)
}

// nodeStatser is a Backend that tells its nodes' connection states (the
// router does).
type nodeStatser interface{ NodeStats() []router.NodeStats }

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Ready reports why the proxy cannot serve every slot now, nil when it
// can: the topology covers every slot, and every master serving slots is
// reachable in the router's view (not in an outage, a connection up).
func (srv *Server) Ready() error {
	if srv.shuttingDown.Load() {
		return errors.New("shutting down")
	}
	covered := 0
	for _, n := range srv.backend.Topology().Nodes {
		for _, r := range n.Slots {
			covered += r.End - r.Start + 1
		}
	}
	if covered < router.SlotCount {
		return fmt.Errorf("topology covers %d of %d slots", covered, router.SlotCount)
	}
	ns, ok := srv.backend.(nodeStatser)
	if !ok {
		return nil
	}
	for _, n := range ns.NodeStats() {
		switch {
		case !n.Master:
		case n.InOutage:
			return fmt.Errorf("master %s is in an outage", n.Addr)
		case n.Up == 0:
			return fmt.Errorf("master %s has no connection up", n.Addr)
		}
	}
	return nil
}

// MetricsHandler serves /metrics (the proxy's metrics, Go runtime and
// process collectors, on a registry of its own), /healthz (200 while the
// process serves) and /readyz (200 when Ready, else 503 and why).
func (srv *Server) MetricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metricsCollector{srv},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{srv}}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := srv.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}

// slogPrinter logs promhttp's errors (a collector that failed) at Warn.
type slogPrinter struct{ srv *Server }

func (p slogPrinter) Println(v ...any) {
	p.srv.logger.Warn("metrics scrape failed", "err", fmt.Sprint(v...))
}
