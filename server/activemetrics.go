package server

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/alqd/alqd/fanout"
)

// activeMetrics holds the Active Leasequery collectors, part of Metrics.
// The fanout counters (delivered, blocked, lapped, resyncs) are read from
// the ring when scraped, so the event loops pay nothing for them.
type activeMetrics struct {
	connections       prometheus.Gauge
	queries           *prometheus.CounterVec
	keepalives        prometheus.Counter
	catchUpsStarted   prometheus.Counter
	catchUpsCompleted prometheus.Counter
	dataMissing       *prometheus.CounterVec

	stats  atomic.Pointer[func() fanout.Stats]
	fanout *fanoutCollector
}

// init creates the collectors in place; m must not be copied afterwards.
func (m *activeMetrics) init() {
	*m = activeMetrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "alqd_active_connections",
			Help: "TCP connections running an Active Leasequery now.",
		}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alqd_active_queries_total",
			Help: "ACTIVELEASEQUERY messages answered, by filter (all or the OPTION_LQ_QUERY type) and status (conflict: a request on a connection that already runs one).",
		}, []string{"filter", "status"}),
		keepalives: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alqd_active_keepalives_total",
			Help: "LEASEQUERY-DATA messages without binding data sent to idle Active Leasequery connections (ACTIVE_LQ_IDLE_TIMEOUT).",
		}),
		catchUpsStarted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alqd_active_catch_ups_started_total",
			Help: "Active Leasequery catch-ups from OPTION_LQ_START_TIME that the history covered.",
		}),
		catchUpsCompleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alqd_active_catch_ups_completed_total",
			Help: "Active Leasequery catch-ups that ended with CatchUpComplete.",
		}),
		dataMissing: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alqd_active_data_missing_total",
			Help: "DataMissing statuses sent, by message: reply (start time below the history floor) or data (history trimmed under a running connection).",
		}, []string{"message"}),
	}
	m.dataMissing.WithLabelValues("reply")
	m.dataMissing.WithLabelValues("data")
	m.fanout = &fanoutCollector{stats: &m.stats}
}

// collectors lists the collectors to register.
func (m *activeMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.connections, m.queries, m.keepalives, m.catchUpsStarted, m.catchUpsCompleted, m.dataMissing, m.fanout}
}

// setStats makes the fanout counters come from fn (Ring.Stats).
func (m *activeMetrics) setStats(fn func() fanout.Stats) { m.stats.Store(&fn) }

// countQuery counts one answered ACTIVELEASEQUERY.
func (m *activeMetrics) countQuery(f fanout.Filter, status string) {
	filter := "all"
	if f.Key.Kind != fanout.FilterAll {
		filter = f.Key.Kind.String()
	}
	m.queries.WithLabelValues(filter, status).Inc()
}

// fanoutCollector exports the fanout counters of the running server's ring.
type fanoutCollector struct {
	stats *atomic.Pointer[func() fanout.Stats]
}

var fanoutDescs = struct {
	published, delivered, blocked, lapped, resyncs, resyncErrors *prometheus.Desc
}{
	published:    prometheus.NewDesc("alqd_active_published_total", "Committed binding changes published to the Active Leasequery ring.", nil, nil),
	delivered:    prometheus.NewDesc("alqd_active_updates_delivered_total", "Binding updates handed to Active Leasequery connections, from the ring or from store scans.", nil, nil),
	blocked:      prometheus.NewDesc("alqd_active_blocked_total", "Times an Active Leasequery connection was blocked: the kernel refused its output.", nil, nil),
	lapped:       prometheus.NewDesc("alqd_active_lapped_total", "Times an Active Leasequery connection fell behind the ring and resumed from the store.", nil, nil),
	resyncs:      prometheus.NewDesc("alqd_active_resyncs_total", "Store scans opened for catching-up, lapped or unblocked Active Leasequery connections.", nil, nil),
	resyncErrors: prometheus.NewDesc("alqd_active_resync_errors_total", "Store scans that failed, DataMissing below the history floor included.", nil, nil),
}

func (f *fanoutCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- fanoutDescs.published
	ch <- fanoutDescs.delivered
	ch <- fanoutDescs.blocked
	ch <- fanoutDescs.lapped
	ch <- fanoutDescs.resyncs
	ch <- fanoutDescs.resyncErrors
}

func (f *fanoutCollector) Collect(ch chan<- prometheus.Metric) {
	var st fanout.Stats
	if fn := f.stats.Load(); fn != nil {
		st = (*fn)()
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(fanoutDescs.published, st.Published)
	counter(fanoutDescs.delivered, st.Delivered)
	counter(fanoutDescs.blocked, st.Blocked)
	counter(fanoutDescs.lapped, st.Lapped)
	counter(fanoutDescs.resyncs, st.Resyncs)
	counter(fanoutDescs.resyncErrors, st.ResyncErrors)
}
