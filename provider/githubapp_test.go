package provider_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/credport/credport/provider"
	"github.com/credport/credport/provider/providertest"
)

// TestMint: GitHub's token is stored with its answer; its refusals are a *RefusedError that
// names what was refused, and a GitHub that fails or cannot be reached is an *UnavailableError.
func TestMint(t *testing.T) {
	t.Parallel()
	const appID = "4242"
	gh := providertest.NewGitHub(t, appID, providertest.AppKey(t))
	gh.Install("1")
	minter := &provider.Minter{HTTP: provider.NewHTTPClient(), Timeout: 5 * time.Second, Now: time.Now,
		Log: slog.New(slog.DiscardHandler)}
	tests := []struct {
		name        string
		base        string
		wrongKey    bool
		install     string
		mode        providertest.GitHubMode
		wantRefusal string // RefusedError.Code
		unavailable bool
	}{
		{name: "minted", base: gh.URL, install: "1"},
		{name: "wrong key", base: gh.URL, wrongKey: true, install: "1", wantRefusal: provider.RefusalAppKeyRejected},
		{name: "no such installation", base: gh.URL, install: "2", wantRefusal: provider.RefusalInstallationNotFound},
		{name: "GitHub fails", base: gh.URL, install: "1", mode: providertest.GitHubFail, unavailable: true},
		{name: "unreachable", base: providertest.UnreachableURL(t), install: "1", unavailable: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gh.SetMode(tt.mode)
			defer gh.SetMode(providertest.GitHubNormal)
			key := providertest.AppKey(t)
			if tt.wrongKey {
				key = providertest.OtherKey(t)
			}
			tok, err := minter.Mint(context.Background(), provider.GitHubApp{Integration: "app", AppID: appID, APIBaseURL: tt.base}, key, tt.install)
			var refused *provider.RefusedError
			var unavailable *provider.UnavailableError
			switch {
			case tt.wantRefusal != "":
				if !errors.As(err, &refused) || refused.Code != tt.wantRefusal || refused.Description == "" {
					t.Fatalf("err %v, want a refusal %s that says why", err, tt.wantRefusal)
				}
			case tt.unavailable:
				if !errors.As(err, &unavailable) || !strings.Contains(unavailable.Reason, "GitHub") {
					t.Fatalf("err %v, want an *UnavailableError that names GitHub", err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				var creds map[string]any
				if err := json.Unmarshal(tok.Credentials, &creds); err != nil {
					t.Fatal(err)
				}
				if creds["type"] != "APP" || creds["access_token"] != gh.LastToken().Token || tok.ExpiresAt == nil || creds["raw"] == nil {
					t.Errorf("credentials %s expiring %v, want GitHub's token, its expiry and answer", tok.Credentials, tok.ExpiresAt)
				}
			}
		})
	}
}
