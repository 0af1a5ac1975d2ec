package server_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/credport/credport/server"
	"github.com/credport/credport/store/storetest"
)

func TestImportConcurrentUpserts(t *testing.T) {
	t.Parallel()
	const n = 24
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		dbURL := b.NewURL(t)
		v := newEnvOn(t, storetest.OpenURL(t, dbURL))
		v.integration("dev", "github", "OAUTH2")
		other, err := server.New(server.Config{Store: storetest.OpenURL(t, dbURL)})
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name    string
			servers []*echo.Echo
		}{
			{"one server", []*echo.Echo{v.e}},
			{"two servers on one database", []*echo.Echo{v.e, other}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				urls := make([]string, len(tt.servers))
				for i, e := range tt.servers {
					srv := httptest.NewServer(e)
					t.Cleanup(srv.Close)
					urls[i] = srv.URL
				}
				connID := strings.ReplaceAll(tt.name, " ", "-")
				bodies := make([]string, n)
				responses := make([]response, n)
				errs := make([]error, n)
				start := make(chan struct{})
				var wg sync.WaitGroup
				for i := range n {
					bodies[i] = fmt.Sprintf(`{"provider_config_key":"github","connection_id":%q,"credentials":{"type":"OAUTH2","access_token":"token-%d"},"metadata":{"writer":%d}}`, connID, i, i)
					wg.Go(func() {
						<-start
						responses[i], errs[i] = post(urls[i%len(urls)]+"/connections", v.key, bodies[i])
					})
				}
				close(start)
				wg.Wait()

				var id, createdAt string
				for i, res := range responses {
					if errs[i] != nil {
						t.Fatalf("request %d: %v", i, errs[i])
					}
					v.on(t).checkContract(httptest.NewRequest(http.MethodPost, "/connections", strings.NewReader(bodies[i])), res)
					if res.status != http.StatusOK {
						t.Fatalf("request %d: status %d, want 200: %s", i, res.status, res.body)
					}
					conn := decodeObject(t, res.body)
					if i == 0 {
						id, createdAt = mustJSON(conn["id"]), mustJSON(conn["created_at"])
					}
					if got := mustJSON(conn["id"]); got != id {
						t.Errorf("request %d: id %s, want %s like request 0", i, got, id)
					}
					if got := mustJSON(conn["created_at"]); got != createdAt {
						t.Errorf("request %d: created_at %s, want %s like request 0", i, got, createdAt)
					}
					if creds, _ := conn["credentials"].(map[string]any); creds["access_token"] != fmt.Sprintf("token-%d", i) {
						t.Errorf("request %d: credentials %s, want its own token", i, mustJSON(conn["credentials"]))
					}
				}
				after := v.on(t).importOK(fmt.Sprintf(`{"provider_config_key":"github","connection_id":%q,"credentials":{"type":"OAUTH2","access_token":"last"}}`, connID))
				if got := mustJSON(after["id"]); got != id {
					t.Errorf("import after the burst: id %s, want %s", got, id)
				}
			})
		}
	})
}

// post sends one import over HTTP.
func post(url, key, body string) (response, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: res.StatusCode, header: res.Header, body: data}, nil
}
