package server_test

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/credport/credport/store/storetest"
)

// TestMetricLabelsBounded: requests with invented methods, random paths and invented credential
// types, with and without a key, add no time series of their own: every label of every credport_
// metric comes from a closed set, and their number does not grow with the requests.
func TestMetricLabelsBounded(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		v := newEnv(t, b)
		v.integration("dev", "github", "OAUTH2")
		round := func(from, to int) {
			for i := from; i < to; i++ {
				for _, req := range []*http.Request{
					newRawRequest(fmt.Sprintf("INVENTED%d", i), "/connections", "", nil),
					newRawRequest(fmt.Sprintf("M%d", i), "/health", "Bearer "+v.key, nil),
					newRawRequest(http.MethodGet, fmt.Sprintf("/random-%d/x", i), "", nil),
					newRawRequest(http.MethodGet, fmt.Sprintf("/connections/c-%d/", i), "Bearer "+v.key, nil),
					newRawRequest(http.MethodPost, "/connections", "Bearer "+v.key, strings.NewReader(
						fmt.Sprintf(`{"provider_config_key":"github","credentials":{"type":"TYPE%d","access_token":"t"}}`, i))),
					newRawRequest(http.MethodPost, "/connections", "Bearer "+v.key, strings.NewReader(
						fmt.Sprintf(`{"provider_config_key":"github","connection_id":"c-%d","credentials":{"type":"OAUTH2","access_token":"t"}}`, i))),
				} {
					if res := v.sendRaw(req); res.status >= 500 {
						t.Fatalf("%s %s: status %d: %s", req.Method, req.URL, res.status, res.body)
					}
				}
			}
		}
		round(0, 20)
		credportSeries(t, v) // GET /metrics is counted once it has answered
		before := credportSeries(t, v)
		round(20, 220)
		after := credportSeries(t, v)
		if len(after) != len(before) {
			t.Errorf("%d credport_ series after 20 rounds of invented requests, %d after 220: labels grow with requests", len(before), len(after))
		}
		for _, s := range after {
			if strings.Contains(s, "INVENTED") || strings.Contains(s, `method="M`) || strings.Contains(s, "random-") ||
				strings.Contains(s, "c-1") || strings.Contains(s, "TYPE") {
				t.Errorf("series %s carries a label from a request", s)
			}
		}
		if len(after) > 400 {
			t.Errorf("%d credport_ series", len(after))
		}
	})
}

var seriesLine = regexp.MustCompile(`^(credport_[a-z_]+)(\{[^}]*\})? `)

// credportSeries are the series of the credport_ metrics on GET /metrics, name and labels.
func credportSeries(t *testing.T, v *env) []string {
	t.Helper()
	res := v.do(request{method: http.MethodGet, path: "/metrics", auth: strPtr(""), contentType: strPtr("")})
	if res.status != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", res.status)
	}
	var out []string
	for _, line := range strings.Split(string(res.body), "\n") {
		if m := seriesLine.FindStringSubmatch(line); m != nil {
			out = append(out, m[1]+m[2])
		}
	}
	return out
}
