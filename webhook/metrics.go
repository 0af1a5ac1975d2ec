package webhook

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/credport/credport/store"
)

var (
	pendingDesc = prometheus.NewDesc("credport_webhook_pending", "Webhook deliveries not yet delivered nor given up.", nil, nil)
	oldestDesc  = prometheus.NewDesc("credport_webhook_oldest_pending_age_seconds",
		"How long the oldest pending webhook delivery has waited, 0 when none.", nil, nil)
)

// backlogCollector reads the outbox's backlog when scraped: every replica reports the shared
// outbox.
type backlogCollector struct {
	db  *store.DB
	now func() time.Time
}

func (c backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- oldestDesc
}

func (c backlogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, oldest, err := c.db.WebhookBacklog(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(pendingDesc, err)
		return
	}
	age := 0.0
	if oldest != nil {
		age = max(c.now().Sub(*oldest).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, age)
}
