package main

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/alqd/alqd/ingest"
)

// ingestCollector exports the counters of the ingest API handler and the
// Kea lease file follower as Prometheus metrics, read from their Stats at
// every scrape. A nil handler or follower (the service is off) exports no
// series of its own.
type ingestCollector struct {
	handler  *ingest.Handler
	follower *ingest.Follower

	requests, records                           *prometheus.Desc
	keaRows, keaRowsRead, keaMalformed          *prometheus.Desc
	keaChanges, keaRotations, keaReloads        *prometheus.Desc
	keaReconciled, keaApplyErrors, keaBytesRead *prometheus.Desc
}

func newIngestCollector(h *ingest.Handler, f *ingest.Follower) *ingestCollector {
	return &ingestCollector{
		handler:  h,
		follower: f,
		requests: prometheus.NewDesc("alqd_ingest_requests_total",
			"Requests to the ingest API, by HTTP status code sent.", []string{"code"}, nil),
		records: prometheus.NewDesc("alqd_ingest_records_total",
			"Binding records committed through the ingest API.", nil, nil),
		keaRows: prometheus.NewDesc("alqd_kea_rows_total",
			"Kea lease file rows parsed, by kind (new, extend, release, expire, flush, decline).", []string{"kind"}, nil),
		keaRowsRead: prometheus.NewDesc("alqd_kea_rows_read_total",
			"Kea lease file rows read, valid or not; header lines are not rows.", nil, nil),
		keaMalformed: prometheus.NewDesc("alqd_kea_malformed_rows_total",
			"Kea lease file rows skipped because they could not be parsed.", nil, nil),
		keaChanges: prometheus.NewDesc("alqd_kea_changes_applied_total",
			"Binding changes from the Kea lease file committed to the store, repeats of the stored state included.", nil, nil),
		keaRotations: prometheus.NewDesc("alqd_kea_rotations_total",
			"Kea live lease files followed after kea-lfc rotated the previous one.", nil, nil),
		keaReloads: prometheus.NewDesc("alqd_kea_reloads_total",
			"Full loads of the Kea lease files, at start-up without a usable position or after a missed rotation.", nil, nil),
		keaReconciled: prometheus.NewDesc("alqd_kea_reconciled_bindings_total",
			"Bindings ended after a full load because Kea no longer had them.", nil, nil),
		keaApplyErrors: prometheus.NewDesc("alqd_kea_apply_errors_total",
			"Failed store commits of Kea lease file rows, each retried.", nil, nil),
		keaBytesRead: prometheus.NewDesc("alqd_kea_read_bytes_total",
			"Octets read from Kea lease files.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *ingestCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.requests, c.records, c.keaRows, c.keaRowsRead, c.keaMalformed,
		c.keaChanges, c.keaRotations, c.keaReloads, c.keaReconciled,
		c.keaApplyErrors, c.keaBytesRead,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *ingestCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	if c.handler != nil {
		s := c.handler.Stats()
		counter(c.requests, s.Requests, "200")
		counter(c.requests, s.FailedRequests, "503")
		for code, n := range s.RejectedByStatus {
			counter(c.requests, n, strconv.Itoa(code))
		}
		counter(c.records, s.Records)
	}
	if c.follower != nil {
		s := c.follower.Stats()
		for kind := ingest.RowKind(0); kind < ingest.NumRowKinds; kind++ {
			// The follower counts assignments as new or extend rows.
			if kind != ingest.RowAssign {
				counter(c.keaRows, s.ByKind[kind], kind.String())
			}
		}
		counter(c.keaRowsRead, s.RowsRead)
		counter(c.keaMalformed, s.MalformedRows)
		counter(c.keaChanges, s.ChangesApplied)
		counter(c.keaRotations, s.Rotations)
		counter(c.keaReloads, s.Reloads)
		counter(c.keaReconciled, s.Reconciled)
		counter(c.keaApplyErrors, s.ApplyErrors)
		counter(c.keaBytesRead, s.BytesRead)
	}
}
