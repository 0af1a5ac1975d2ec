package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/credport/credport/provider/providertest"
	"github.com/credport/credport/server"
	"github.com/credport/credport/store/storetest"
)

// TestRefreshUnavailableAnswersValidToken: when the provider cannot be reached for an early
// refresh (the token expires within the window but has not expired), the read answers the stored
// token; it answers 502 only for an expired token or a forced refresh. The connection stays due,
// so the next attempt renews it once the provider is back.
func TestRefreshUnavailableAnswersValidToken(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		for _, mode := range []struct {
			name string
			mode providertest.Mode
		}{{"500", providertest.Fail}, {"hang", providertest.Hang}} {
			t.Run(mode.name, func(t *testing.T) {
				clk := &clock{now: time.Now().UTC().Truncate(time.Second)}
				v := newRefreshEnv(t, b, server.Config{Now: clk.Now, ProviderTimeout: 200 * time.Millisecond})
				v = v.on(t)
				v.importExpiringAt("c", clk.Now().Add(10*time.Minute))
				v.provider.SetMode(mode.mode)

				// Each attempt is a second after the last: a refresh that starts no later than another's
				// failure shares that failure instead of calling the provider.
				for i := range 2 {
					clk.Add(time.Second)
					creds := credentials(t, v.read("c", ""))
					if creds["access_token"] != "old-access-token-c" {
						t.Errorf("read %d: access_token %v, want the stored one", i, creds["access_token"])
					}
				}
				v.wantCalls(t, 2, "two reads of a token due for refresh")
				clk.Add(time.Second)
				wantError(t, v.read("c", "force_refresh=true"), http.StatusBadGateway, "provider_unavailable")
				v.wantCalls(t, 3, "a forced refresh")
				if got := v.connErrors("c"); got != "[]" {
					t.Errorf("errors %s, want []", got)
				}

				clk.Add(10 * time.Minute) // the token has now expired
				wantError(t, v.read("c", ""), http.StatusBadGateway, "provider_unavailable")
				v.wantCalls(t, 4, "a read of the expired token")

				v.provider.SetMode(providertest.OK)
				clk.Add(time.Second)
				creds := credentials(t, v.read("c", ""))
				if !strings.HasPrefix(fmt.Sprint(creds["access_token"]), "at-") {
					t.Errorf("access_token %v once the provider is back, want a renewed one", creds["access_token"])
				}
				v.wantCalls(t, 5, "once the provider is back")
			})
		}
	})
}
