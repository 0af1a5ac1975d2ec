package refresh

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"time"

	"github.com/credport/credport/provider"
	"github.com/credport/credport/store"
)

// renew asks the provider for new credentials in place of stored ones.
func (r *Refresher) renew(ctx context.Context, in store.Integration, stored json.RawMessage) (store.RefreshResult, error) {
	var creds map[string]any
	if err := json.Unmarshal(stored, &creds); err != nil {
		return store.RefreshResult{}, fmt.Errorf("stored credentials: %w", err)
	}
	endpoint := provider.Endpoint{TokenURL: in.TokenURL, TokenAuth: in.TokenAuth, Scopes: provider.Scopes(in.Scopes)}
	var (
		tok provider.Token
		err error
	)
	switch creds["type"] {
	case "OAUTH2":
		refreshToken, _ := creds["refresh_token"].(string)
		if refreshToken == "" {
			return store.RefreshResult{Outcome: store.RefreshImpossible}, newError(Impossible,
				"Cannot refresh: the connection has no refresh token")
		}
		if endpoint.ClientID, endpoint.ClientSecret, err = r.clientCredentials(ctx, in, creds); err != nil {
			return store.RefreshResult{}, err
		}
		tok, err = r.client.Refresh(ctx, endpoint, refreshToken)
	case "OAUTH2_CC":
		endpoint.ClientID, _ = creds["client_id"].(string)
		endpoint.ClientSecret, _ = creds["client_secret"].(string)
		tok, err = r.client.ClientCredentials(ctx, endpoint)
	default:
		return store.RefreshResult{Outcome: store.RefreshImpossible}, newError(Impossible,
			fmt.Sprintf("Cannot refresh credentials of type %v", creds["type"]))
	}
	var refused *provider.RefusedError
	var unavailable *provider.UnavailableError
	switch {
	case errors.As(err, &refused):
		logID, idErr := newLogID()
		if idErr != nil {
			return store.RefreshResult{}, idErr
		}
		return store.RefreshResult{Outcome: store.RefreshRefused, Error: refused.Error(), LogID: logID,
				ProviderError: refused.Code, ProviderDescription: refused.Description},
			&Error{Kind: Refused, Err: refused,
				Message: "The provider refused to refresh the access token: " + refusalReason(refused)}
	case errors.As(err, &unavailable):
		return store.RefreshResult{Outcome: store.RefreshUnavailable}, providerUnavailable(err)
	case err != nil:
		return store.RefreshResult{}, err
	}
	renewed, err := renewedCredentials(creds, tok)
	if err != nil {
		return store.RefreshResult{}, err
	}
	return store.RefreshResult{Outcome: store.RefreshRenewed, Credentials: renewed, ExpiresAt: tok.ExpiresAt}, nil
}

// clientCredentials are the client id and secret an OAUTH2 refresh authenticates with: the
// connection's config_override when it has one, else the integration's.
func (r *Refresher) clientCredentials(ctx context.Context, in store.Integration, creds map[string]any) (string, string, error) {
	if override, ok := creds["config_override"].(map[string]any); ok {
		id, _ := override["client_id"].(string)
		secret, _ := override["client_secret"].(string)
		if id != "" && secret != "" {
			return id, secret, nil
		}
	}
	secret, err := r.store.IntegrationClientSecret(ctx, in)
	if err != nil {
		return "", "", err
	}
	return in.ClientID, secret, nil
}

// renewedCredentials are stored credentials with the provider's new token in place.
func renewedCredentials(creds map[string]any, tok provider.Token) (json.RawMessage, error) {
	out := map[string]any{"type": creds["type"], "raw": tok.Raw}
	switch creds["type"] {
	case "OAUTH2":
		out["access_token"] = tok.AccessToken
		if tok.RefreshToken != "" {
			out["refresh_token"] = tok.RefreshToken
		}
		if override, ok := creds["config_override"]; ok {
			out["config_override"] = override
		}
	case "OAUTH2_CC":
		out["token"] = tok.AccessToken
		out["client_id"], out["client_secret"] = creds["client_id"], creds["client_secret"]
	}
	if tok.ExpiresAt != nil {
		out["expires_at"] = tok.ExpiresAt.UTC().Format(time.RFC3339Nano)
	}
	renewed, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("renewed credentials: %w", err)
	}
	return renewed, nil
}

func refusalReason(e *provider.RefusedError) string {
	switch {
	case e.Code != "" && e.Description != "":
		return e.Code + ": " + e.Description
	case e.Code != "":
		return e.Code
	case e.Description != "":
		return e.Description
	}
	return "HTTP " + strconv.Itoa(e.Status)
}

// newLogID names one refusal, in the connection's errors and in the log.
func newLogID() (string, error) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 20)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			return "", fmt.Errorf("log id: %w", err)
		}
		b[i] = alphabet[n.Int64()]
	}
	return string(b), nil
}
