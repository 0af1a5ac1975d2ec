package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/gen"
	"github.com/credport/credport/refresh"
	"github.com/credport/credport/store"
)

// scopeReadCredentials is the one scope that lets credentials out of the server.
const scopeReadCredentials = "environment:connections:read_credentials"

// GetConnection returns one connection; its credentials only to a key holding read_credentials.
func (s *Server) GetConnection(ctx context.Context, req gen.GetConnectionRequestObject) (gen.GetConnectionResponseObject, error) {
	key, ok := principal(ctx)
	if !ok {
		return nil, errors.New("get connection: no authenticated key")
	}
	refreshToken := s.rules.Bool(req.Params.RefreshToken)
	forceRefresh := s.rules.Bool(req.Params.ForceRefresh)
	refreshJWT := s.rules.Bool(req.Params.RefreshGithubAppJwtToken)
	withCredentials := contract.Grants(key.Scopes, scopeReadCredentials)
	if !withCredentials && (refreshToken || forceRefresh || refreshJWT) {
		return nil, apiError(gen.ErrorCodeForbidden,
			"Credential and refresh options require the "+scopeReadCredentials+" scope")
	}
	integration, err := s.integrations.get(ctx, integrationKey{key.EnvironmentID, req.Params.ProviderConfigKey})
	if errors.Is(err, store.ErrNotFound) {
		return nil, errUnknownProviderConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("get connection: %w", err)
	}
	target := store.ReadConnection{
		EnvironmentID:   key.EnvironmentID,
		Integration:     integration,
		ConnectionID:    req.ConnectionId,
		WithCredentials: withCredentials,
	}
	conn, err := s.store.GetConnection(ctx, target)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errConnectionNotFound()
	}
	if err != nil {
		return nil, fmt.Errorf("get connection: %w", err)
	}
	if withCredentials && refresh.Refreshable(integration) {
		renewed, err := s.refresh.RenewIfDue(ctx, target, conn, forceRefresh)
		if err != nil {
			notes(ctx).addAudit("integration", integration.UniqueKey, "connection_id", req.ConnectionId, "outcome", "refresh_failed")
			var failed *refresh.Error
			if errors.As(err, &failed) && failed.LogID != "" {
				notes(ctx).addAudit("log_id", failed.LogID)
			}
			return nil, fmt.Errorf("get connection: %w", err)
		}
		// A read that renewed the token is a change: its access line says which connection.
		if renewed {
			notes(ctx).addAudit("integration", integration.UniqueKey, "connection_id", req.ConnectionId, "outcome", "refreshed")
			// The provider's time is not the database's: the read again gets a deadline of its own.
			readCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.requestTimeout)
			defer cancel()
			if conn, err = s.store.GetConnection(readCtx, target); err != nil {
				return nil, fmt.Errorf("get connection: %w", err)
			}
		}
	}
	if !withCredentials {
		conn.Credentials = json.RawMessage(`{}`)
	}
	if !refreshToken {
		if conn.Credentials, err = withoutRefreshTokens(conn.Credentials); err != nil {
			return nil, fmt.Errorf("get connection: credentials: %w", err)
		}
		if conn.ConnectionConfig, err = withoutRefreshTokens(conn.ConnectionConfig); err != nil {
			return nil, fmt.Errorf("get connection: connection_config: %w", err)
		}
	}
	full, err := connectionFull(conn)
	if err != nil {
		return nil, fmt.Errorf("get connection: %w", err)
	}
	read := connectionRead(full)
	read.WebhookUrlOverride = conn.WebhookURLOverride
	read.Errors = connectionErrors(conn.Refresh.Failures, conn.Refresh.LogID)
	return gen.GetConnection200JSONResponse{
		Body:    read,
		Headers: gen.GetConnection200ResponseHeaders{CacheControl: "no-store"},
	}, nil
}

// connectionErrors are a connection's errors: the auth error of the provider's last refusal of a
// refresh, while refusals are counted (a renewal or a re-import clears them).
func connectionErrors(refreshFailures int, logID string) []gen.ConnectionError {
	if refreshFailures == 0 {
		return []gen.ConnectionError{}
	}
	return []gen.ConnectionError{{Type: gen.Auth, LogId: logID}}
}

// connectionRead is a ConnectionFull as GET answers it.
func connectionRead(f gen.ConnectionFull) gen.ConnectionRead {
	lastFetched := f.LastFetchedAt
	return gen.ConnectionRead{
		Id:                f.Id,
		ConnectionId:      f.ConnectionId,
		ProviderConfigKey: f.ProviderConfigKey,
		Provider:          f.Provider,
		Errors:            f.Errors,
		EndUser:           f.EndUser,
		Metadata:          f.Metadata,
		ConnectionConfig:  f.ConnectionConfig,
		Tags:              f.Tags,
		CreatedAt:         f.CreatedAt,
		UpdatedAt:         f.UpdatedAt,
		LastFetchedAt:     &lastFetched,
		Credentials:       f.Credentials,
	}
}

// isRefreshTokenKey tells whether a key names a refresh token as the reference sees it: its
// letters, lower-cased, spell "refreshtoken" (refresh_token, refreshToken, Refresh-Token, ...).
func isRefreshTokenKey(k string) bool {
	var b strings.Builder
	for _, r := range k {
		if unicode.IsLetter(r) {
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String() == "refreshtoken"
}

// withoutRefreshTokens is a JSON value with every refresh-token key removed, at any depth.
func withoutRefreshTokens(data json.RawMessage) (json.RawMessage, error) {
	if len(data) == 0 || !strings.Contains(strings.ToLower(string(data)), "refresh") {
		return data, nil
	}
	var v any
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	out, err := json.Marshal(stripRefreshTokens(v))
	if err != nil {
		return nil, err
	}
	return out, nil
}

func stripRefreshTokens(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, child := range t {
			if isRefreshTokenKey(k) {
				delete(t, k)
				continue
			}
			t[k] = stripRefreshTokens(child)
		}
	case []any:
		for i, child := range t {
			t[i] = stripRefreshTokens(child)
		}
	}
	return v
}

// DeleteConnection removes a connection and its sealed credentials for good.
func (s *Server) DeleteConnection(ctx context.Context, req gen.DeleteConnectionRequestObject) (gen.DeleteConnectionResponseObject, error) {
	key, ok := principal(ctx)
	if !ok {
		return nil, errors.New("delete connection: no authenticated key")
	}
	integration, err := s.integrations.get(ctx, integrationKey{key.EnvironmentID, req.Params.ProviderConfigKey})
	if errors.Is(err, store.ErrNotFound) {
		return nil, errUnknownConnectionToDelete()
	}
	if err != nil {
		return nil, fmt.Errorf("delete connection: %w", err)
	}
	err = s.store.DeleteConnection(ctx, key.EnvironmentID, integration.UniqueKey, req.ConnectionId)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errUnknownConnectionToDelete()
	}
	if err != nil {
		return nil, fmt.Errorf("delete connection: %w", err)
	}
	notes(ctx).addAudit("integration", integration.UniqueKey, "connection_id", req.ConnectionId, "outcome", "deleted")
	return gen.DeleteConnection200JSONResponse{Success: true}, nil
}
