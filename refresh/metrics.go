package refresh

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// counter counts token refreshes by trigger (read, background) and outcome: renewed, refused,
// unavailable, blocked (backing off or exhausted), shared (another refresh's result was used),
// skipped or error.
type counter struct{ vec *prometheus.CounterVec }

func newCounter(reg prometheus.Registerer) (counter, error) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "credport_token_refreshes_total",
		Help: "Token refreshes by trigger (read, background) and outcome.",
	}, []string{"trigger", "outcome"})
	if err := reg.Register(vec); err != nil {
		return counter{}, fmt.Errorf("register metrics: %w", err)
	}
	return counter{vec: vec}, nil
}

func (c counter) inc(trigger, outcome string) { c.vec.WithLabelValues(trigger, outcome).Inc() }

// newBackgroundRounds counts the background refresh's finished rounds, which tells an operator
// (and a test) that the loop runs.
func newBackgroundRounds(reg prometheus.Registerer) (prometheus.Counter, error) {
	c := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "credport_refresh_background_rounds_total",
		Help: "Rounds of the background token refresh that have finished.",
	})
	if err := reg.Register(c); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	return c, nil
}
