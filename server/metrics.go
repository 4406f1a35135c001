package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/alqd/alqd/codec"
)

// Metrics holds the server's Prometheus collectors. Create it with
// NewMetrics and pass it with WithMetrics; a Server without one keeps
// private collectors that nobody scrapes. All methods are safe for
// concurrent use.
type Metrics struct {
	connections  prometheus.Gauge
	accepted     prometheus.Counter
	closed       *prometheus.CounterVec
	rejected     *prometheus.CounterVec
	queries      *prometheus.CounterVec
	bindingsSent *prometheus.CounterVec
	bytesSent    *prometheus.CounterVec
	bytesRecv    *prometheus.CounterVec
	storeLatency *prometheus.HistogramVec
	encodeErrors prometheus.Counter
	relayOmitted *prometheus.CounterVec

	// Series resolved once, for the per-message paths.
	tcpBindings, udpBindings prometheus.Counter
	tcpSent, udpSent         prometheus.Counter
	tcpReceived, udpReceived prometheus.Counter
	tcpRelayOmitted          prometheus.Counter
	udpRelayOmitted          prometheus.Counter

	active activeMetrics
	tls    tlsMetrics
}

// NewMetrics creates the collectors and registers them with reg; a nil reg
// registers nothing. It fails when reg already holds collectors with the
// same names.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "alqd_connections",
			Help: "TCP connections open now.",
		}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alqd_connections_accepted_total",
			Help: "TCP connections accepted, including those closed at once for a limit.",
		}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alqd_connections_closed_total",
			Help: "TCP connections closed, by reason.",
		}, []string{"reason"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alqd_connections_rejected_total",
			Help: "TCP connections closed at once because a connection limit was reached, by limit (max_conns, max_conns_per_requestor, max_unallowed_conns).",
		}, []string{"limit"}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alqd_queries_total",
			Help: "Leasequery queries answered, by transport, query type and status (no_data: no binding matched).",
		}, []string{"transport", "type", "status"}),
		bindingsSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alqd_bindings_sent_total",
			Help: "Bindings sent in OPTION_CLIENT_DATA, by transport.",
		}, []string{"transport"}),
		bytesSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alqd_sent_bytes_total",
			Help: "Octets of reply messages handed to the kernel, framing included, by transport.",
		}, []string{"transport"}),
		bytesRecv: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alqd_received_bytes_total",
			Help: "Octets of query messages received, framing included, by transport.",
		}, []string{"transport"}),
		storeLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "alqd_store_seconds",
			Help:    "Latency of store calls, by operation (open: until a scan yields its first binding or ends).",
			Buckets: prometheus.ExponentialBuckets(5e-6, 4, 10),
		}, []string{"op"}),
		encodeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "alqd_encode_errors_total",
			Help: "Bindings left out of a reply because they could not be encoded.",
		}),
		relayOmitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "alqd_relay_data_omitted_total",
			Help: "Clients reported without the OPTION_LQ_RELAY_DATA the requestor asked for, because the message would not fit, by transport.",
		}, []string{"transport"}),
	}
	m.active.init()
	for _, r := range closeReasons {
		m.closed.WithLabelValues(r.String())
	}
	for _, l := range []string{limitMaxConns, limitMaxConnsPerRequestor, limitMaxUnallowedConns} {
		m.rejected.WithLabelValues(l)
	}
	m.tcpBindings = m.bindingsSent.WithLabelValues(transportTCP.String())
	m.udpBindings = m.bindingsSent.WithLabelValues(transportUDP.String())
	m.tcpSent = m.bytesSent.WithLabelValues(transportTCP.String())
	m.udpSent = m.bytesSent.WithLabelValues(transportUDP.String())
	m.tcpReceived = m.bytesRecv.WithLabelValues(transportTCP.String())
	m.udpReceived = m.bytesRecv.WithLabelValues(transportUDP.String())
	m.tcpRelayOmitted = m.relayOmitted.WithLabelValues(transportTCP.String())
	m.udpRelayOmitted = m.relayOmitted.WithLabelValues(transportUDP.String())
	m.tls = newTLSMetrics(m.bytesSent, m.bytesRecv)
	if reg == nil {
		return m, nil
	}
	for _, c := range append([]prometheus.Collector{
		m.connections, m.accepted, m.closed, m.rejected, m.queries, m.bindingsSent,
		m.bytesSent, m.bytesRecv, m.storeLatency, m.encodeErrors, m.relayOmitted,
	}, append(m.active.collectors(), m.tls.collectors()...)...) {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) observeStore(op string, began time.Time) {
	m.storeLatency.WithLabelValues(op).Observe(time.Since(began).Seconds())
}

// countQuery counts one answered query; status "no_data" is a success with
// no binding.
func (m *Metrics) countQuery(t transport, q codec.QueryType, status string) {
	m.queries.WithLabelValues(t.String(), queryLabel(q), status).Inc()
}

func queryLabel(q codec.QueryType) string {
	if !q.Known() {
		return "unknown"
	}
	return q.String()
}

func statusLabel(err *codec.StatusError) string {
	if err == nil {
		return codec.StatusSuccess.String()
	}
	return err.Code.String()
}
