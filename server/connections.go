package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/gen"
	"github.com/credport/credport/provider"
	"github.com/credport/credport/store"
)

// ImportConnection creates or updates a connection with the credentials the caller already has.
func (s *Server) ImportConnection(ctx context.Context, req gen.ImportConnectionRequestObject) (gen.ImportConnectionResponseObject, error) {
	key, ok := principal(ctx)
	if !ok {
		return nil, errors.New("import connection: no authenticated key")
	}
	out, err := s.importOne(ctx, key, req.Body, validatedCredentials(ctx), s.rules.Bool(req.Params.NoWebhooks))
	if err != nil {
		return nil, err
	}
	n := notes(ctx)
	n.created = &out.created
	outcome := "updated"
	if out.created {
		outcome = "created"
	}
	n.addAudit("integration", out.connection.ProviderConfigKey, "connection_id", out.connection.ConnectionId,
		"type", cmp.Or(n.credentialType, "unknown"), "outcome", outcome)
	return gen.ImportConnection200JSONResponse{
		Body:    out.connection,
		Headers: gen.ImportConnection200ResponseHeaders{CacheControl: "no-store"},
	}, nil
}

// importOne applies one import request of key: every rule of POST /connections, the store's
// upsert and the answer's connection. POST /connections and each item of POST
// /connections/batch go through it alike; its errors become answers through toAPIError.
// creds are body's credentials as the validator decoded them, nil when it did not; quiet
// (no_webhooks) queues no webhook for it.
func (s *Server) importOne(ctx context.Context, key store.APIKey, body *gen.ImportConnectionRequest, creds map[string]any, quiet bool) (*imported, error) {
	integration, err := s.integrations.get(ctx, integrationKey{key.EnvironmentID, body.ProviderConfigKey})
	if errors.Is(err, store.ErrNotFound) {
		return nil, apiError(gen.ErrorCodeNotFound, "Integration does not exist")
	}
	if err != nil {
		return nil, fmt.Errorf("import connection: %w", err)
	}
	credType, ok := creds["type"].(string)
	if !ok {
		if credType, err = body.Credentials.Discriminator(); err != nil {
			return nil, fmt.Errorf("import connection: %w", err)
		}
	}
	if credType != integration.AuthMode {
		return nil, invalidBody(fmt.Sprintf("Provider %s does not support %s auth", integration.AuthMode, credType),
			detail("invalid_auth_mode", "The integration's auth mode is "+integration.AuthMode, []string{"credentials", "type"}))
	}
	var app *gen.AppInstallationCredentials
	switch credType {
	case "APP":
		creds, err := body.Credentials.AsAppInstallationCredentials()
		if err != nil {
			return nil, fmt.Errorf("import connection: %w", err)
		}
		if err := s.checkApp(integration, creds); err != nil {
			return nil, err
		}
		app = &creds
	case "TBA":
		if !hasAccountID(body.ConnectionConfig) {
			return nil, invalidBody("TBA credentials need connection_config.accountId",
				detail("invalid_type", "Required", []string{"connection_config", "accountId"}))
		}
	}

	in := store.UpsertConnection{
		EnvironmentID: key.EnvironmentID,
		Integration:   integration,
		ConnectionID:  uuid.NewString(),
		NoWebhooks:    quiet,
	}
	if body.WebhookUrlOverride != nil {
		if err := s.checkWebhookURL(ctx, *body.WebhookUrlOverride); err != nil {
			return nil, err
		}
		in.WebhookURLOverride = *body.WebhookUrlOverride
	}
	if body.ConnectionId != nil {
		in.ConnectionID = *body.ConnectionId
	}
	if body.ConnectionConfig != nil {
		in.ConnectionConfig = *body.ConnectionConfig
	}
	if body.Metadata != nil {
		in.Metadata = *body.Metadata
	}
	if body.Tags != nil || body.EndUser != nil {
		tags, errs := mergeTags(body.Tags, body.EndUser)
		if len(errs) == 0 {
			errs = s.validate.ValidateValue(s.tags, stringMapToAny(tags), []string{"tags"})
		}
		if len(errs) > 0 {
			return nil, invalidBody("Invalid tags", errs...)
		}
		if in.Tags, err = json.Marshal(tags); err != nil {
			return nil, fmt.Errorf("import connection: %w", err)
		}
	}
	if body.EndUser != nil {
		if in.EndUser, err = json.Marshal(body.EndUser); err != nil {
			return nil, fmt.Errorf("import connection: %w", err)
		}
	}
	if app != nil {
		// Every rule of the request has passed: only now is GitHub asked for a token.
		if err := s.mintAppCredentials(ctx, &in, *app, body.ConnectionConfig); err != nil {
			return nil, err
		}
		// The provider's time is not the database's: what follows gets a deadline of its own.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), s.requestTimeout)
		defer cancel()
	} else if in.Credentials, in.CredentialsExpiresAt, err = storedCredentials(body.Credentials, creds, s.rules.CredentialPolicies, s.now().UTC()); err != nil {
		return nil, fmt.Errorf("import connection: %w", err)
	}

	conn, err := s.store.UpsertConnection(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("import connection: %w", err)
	}
	if app != nil && !contract.Grants(key.Scopes, scopeReadCredentials) {
		if conn.Credentials, err = withheldAppCredentials(conn.Credentials, *app); err != nil {
			return nil, fmt.Errorf("import connection: %w", err)
		}
	}
	full, err := connectionFull(conn)
	if err != nil {
		return nil, fmt.Errorf("import connection: %w", err)
	}
	if full.EndUser != nil && full.EndUser.Tags == nil {
		// The seed's ConnectionFull declares the end user's tags an object: {} when it has none.
		full.EndUser.Tags = &map[string]any{}
	}
	return &imported{connection: full, created: conn.Created}, nil
}

// imported is the outcome of one import: the answer's connection, and whether it was new.
type imported struct {
	connection gen.ConnectionFull
	created    bool
}

// withheldAppCredentials are the credentials of an APP import as a key without read_credentials
// gets them: the token credport minted was never the caller's, so the answer carries only what
// the request sent and when the token expires (AppCredentialsWithheld). Every other type stores
// what the request sent, which the answer may echo.
func withheldAppCredentials(stored json.RawMessage, sent gen.AppInstallationCredentials) (json.RawMessage, error) {
	var minted struct {
		ExpiresAt *string `json:"expires_at"`
	}
	if err := json.Unmarshal(stored, &minted); err != nil {
		return nil, fmt.Errorf("stored credentials: %w", err)
	}
	out := map[string]any{"type": "APP", "app_id": sent.AppId, "installation_id": sent.InstallationId}
	if minted.ExpiresAt != nil {
		out["expires_at"] = *minted.ExpiresAt
	}
	return json.Marshal(out)
}

// checkApp refuses an APP import that the integration's GitHub App cannot serve, before GitHub
// is asked anything.
func (s *Server) checkApp(integration store.Integration, creds gen.AppInstallationCredentials) error {
	if integration.AppID == "" || !integration.HasPrivateKey {
		return invalidBody(fmt.Sprintf("Integration %q has no GitHub App configured", integration.UniqueKey),
			detail("app_not_configured", "The integration has no GitHub App configured", []string{"credentials", "app_id"}))
	}
	if creds.AppId != integration.AppID {
		return invalidBody(fmt.Sprintf("app_id %s is not the GitHub App of integration %q", creds.AppId, integration.UniqueKey),
			detail("app_id_mismatch", "Not the app id of the integration's GitHub App", []string{"credentials", "app_id"}))
	}
	return nil
}

// mintAppCredentials fills in an APP import: the installation token GitHub mints for the
// integration's app, and connection_config with app_id and installation_id. When the request
// sent no connection_config, those two keys are written over the stored one.
func (s *Server) mintAppCredentials(ctx context.Context, in *store.UpsertConnection, creds gen.AppInstallationCredentials, sentConfig *json.RawMessage) error {
	key, err := s.store.AppPrivateKey(ctx, in.Integration)
	if err != nil {
		return fmt.Errorf("import connection: %w", err)
	}
	app := provider.GitHubApp{Integration: in.Integration.UniqueKey, AppID: in.Integration.AppID, APIBaseURL: in.Integration.APIBaseURL}
	tok, err := s.github.Mint(ctx, app, key, creds.InstallationId)
	if err != nil {
		return fmt.Errorf("import connection: %w", err)
	}
	in.Credentials, in.CredentialsExpiresAt = tok.Credentials, tok.ExpiresAt
	if in.ConnectionConfig, err = appConnectionConfig(sentConfig, creds.AppId, creds.InstallationId); err != nil {
		return fmt.Errorf("import connection: %w", err)
	}
	in.MergeConnectionConfig = sentConfig == nil
	return nil
}

// connectionFull renders a stored connection as the API's ConnectionFull.
func connectionFull(c store.Connection) (gen.ConnectionFull, error) {
	full := gen.ConnectionFull{
		Id:                c.ID,
		ConnectionId:      c.ConnectionID,
		ProviderConfigKey: c.ProviderConfigKey,
		Provider:          c.Provider,
		Errors:            []gen.ConnectionError{},
		Metadata:          jsonObjectOrEmpty(c.Metadata),
		ConnectionConfig:  jsonObjectOrEmpty(c.ConnectionConfig),
		CreatedAt:         c.CreatedAt.UTC(),
		UpdatedAt:         c.UpdatedAt.UTC(),
		LastFetchedAt:     c.LastFetchedAt.UTC(),
	}
	if len(c.Tags) > 0 {
		if err := json.Unmarshal(c.Tags, &full.Tags); err != nil {
			return gen.ConnectionFull{}, fmt.Errorf("decode stored tags: %w", err)
		}
	}
	if len(c.Credentials) > 0 {
		// The stored JSON object is the answer's as it is: taken over, not decoded and encoded
		// again. Encoding the answer checks it.
		if err := full.Credentials.UnmarshalJSON(c.Credentials); err != nil {
			return gen.ConnectionFull{}, fmt.Errorf("stored credentials: %w", err)
		}
	}
	if len(c.EndUser) > 0 {
		var endUser gen.ConnectionEndUser
		if err := json.Unmarshal(c.EndUser, &endUser); err != nil {
			return gen.ConnectionFull{}, fmt.Errorf("decode stored end_user: %w", err)
		}
		full.EndUser = &endUser
	}
	return full, nil
}

// jsonObjectOrEmpty is a stored JSON object, or {} when nothing is stored.
func jsonObjectOrEmpty(data json.RawMessage) json.RawMessage {
	if len(data) == 0 {
		return json.RawMessage(`{}`)
	}
	return data
}

// hasAccountID tells whether a connection_config carries a non-empty accountId string.
func hasAccountID(config *json.RawMessage) bool {
	if config == nil {
		return false
	}
	var c struct {
		AccountID any `json:"accountId"`
	}
	if err := json.Unmarshal(*config, &c); err != nil {
		return false
	}
	id, _ := c.AccountID.(string)
	return id != ""
}

func stringMapToAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
