package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/gen"
	"github.com/credport/credport/provider"
	"github.com/credport/credport/store"
)

// IntegrationStore is what a Store also offers when the integrations API can manage its
// integrations; the CLI's integrations commands call the same methods.
type IntegrationStore interface {
	CreateIntegration(ctx context.Context, in store.NewIntegration) (store.Integration, error)
	ListEnvironmentIntegrations(ctx context.Context, envID int64) ([]store.Integration, error)
	UpdateIntegration(ctx context.Context, up store.IntegrationUpdate) (store.Integration, error)
	DeleteIntegration(ctx context.Context, envID int64, uniqueKey string) (int64, error)
	OpenIntegrationSecrets(ctx context.Context, in store.Integration) (store.IntegrationSecrets, error)
}

// isoMillis is JavaScript's Date.toISOString format, which the reference's timestamps have.
const isoMillis = "2006-01-02T15:04:05.000Z"

// logoBaseURL is where the reference serves provider logos, by provider name.
const logoBaseURL = "https://app.nango.dev/images/template-logos/"

// Scopes the integrations handlers check beyond the operation's own.
const scopeReadIntegrationCredentials = "environment:integrations:read_credentials"

// The reference's messages, word for word.
const (
	msgIncompatibleCredentials = "incompatible credentials auth type and provider auth"
	msgDeleteNotFound          = "Integration does not exist"
)

func (s *Server) integrationStore() (IntegrationStore, error) {
	is, ok := s.store.(IntegrationStore)
	if !ok {
		return nil, errors.New("the store cannot manage integrations")
	}
	return is, nil
}

func integrationNotFound(uniqueKey string) *Error {
	return apiError(gen.ErrorCodeNotFound, fmt.Sprintf("Integration %q does not exist", uniqueKey))
}

// ListIntegrations lists the environment's integrations, never with credentials.
func (s *Server) ListIntegrations(ctx context.Context, _ gen.ListIntegrationsRequestObject) (gen.ListIntegrationsResponseObject, error) {
	key, ok := principal(ctx)
	if !ok {
		return nil, errors.New("list integrations: no authenticated key")
	}
	is, err := s.integrationStore()
	if err != nil {
		return nil, err
	}
	list, err := is.ListEnvironmentIntegrations(ctx, key.EnvironmentID)
	if err != nil {
		return nil, fmt.Errorf("list integrations: %w", err)
	}
	out := gen.ListIntegrations200JSONResponse{Data: make([]gen.Integration, len(list))}
	for i, in := range list {
		out.Data[i] = s.integrationView(in)
	}
	return out, nil
}

// GetIntegration answers one integration, with its credentials when asked for by a key that may
// read them.
func (s *Server) GetIntegration(ctx context.Context, req gen.GetIntegrationRequestObject) (gen.GetIntegrationResponseObject, error) {
	key, ok := principal(ctx)
	if !ok {
		return nil, errors.New("get integration: no authenticated key")
	}
	in, err := s.store.FindIntegration(ctx, key.EnvironmentID, req.UniqueKey)
	if errors.Is(err, store.ErrNotFound) {
		return nil, integrationNotFound(req.UniqueKey)
	}
	if err != nil {
		return nil, fmt.Errorf("get integration: %w", err)
	}
	view := s.integrationView(in)
	var include []gen.GetIntegrationParamsInclude
	if req.Params.Include != nil {
		include = *req.Params.Include
	}
	if slices.Contains(include, "webhook") {
		// credport receives no provider webhooks, so there is no URL to route them to.
		null := json.RawMessage("null")
		view.WebhookUrl = &null
	}
	if slices.Contains(include, "credentials") && contract.Grants(key.Scopes, scopeReadIntegrationCredentials) {
		creds, err := s.integrationCredentials(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("get integration: %w", err)
		}
		view.Credentials = &creds
	}
	return gen.GetIntegration200JSONResponse{
		Body:    gen.IntegrationResponse{Data: view},
		Headers: gen.GetIntegration200ResponseHeaders{CacheControl: "no-store"},
	}, nil
}

// CreateIntegration creates an integration whose auth mode is its provider's in the catalog, or
// the body's auth_mode for a provider outside it.
func (s *Server) CreateIntegration(ctx context.Context, req gen.CreateIntegrationRequestObject) (gen.CreateIntegrationResponseObject, error) {
	key, ok := principal(ctx)
	if !ok {
		return nil, errors.New("create integration: no authenticated key")
	}
	is, err := s.integrationStore()
	if err != nil {
		return nil, err
	}
	body := req.Body
	entry, known := s.providers[body.Provider]
	mode := entry.AuthMode
	switch {
	case !known && body.AuthMode == nil:
		return nil, invalidBody("Invalid request body", detail("invalid_string", "Invalid provider", []string{"provider"}))
	case !known:
		mode = string(*body.AuthMode)
	case body.AuthMode != nil && string(*body.AuthMode) != mode:
		return nil, invalidBody(fmt.Sprintf("auth_mode %s is not the auth mode of provider %s, %s", *body.AuthMode, body.Provider, mode),
			detail("invalid_enum_value", "Not the provider's auth mode "+mode, []string{"auth_mode"}))
	}
	if err := checkIntegrationCredentials(body.Credentials, mode); err != nil {
		return nil, err
	}
	if body.Credentials == nil && slices.Contains([]string{"OAUTH1", "OAUTH2", "APP"}, mode) {
		return nil, invalidBody("Missing credentials")
	}
	in := store.NewIntegration{
		Environment: key.Environment, UniqueKey: body.UniqueKey, Provider: body.Provider, AuthMode: mode,
		ForwardWebhooks: body.ForwardWebhooks,
	}
	if body.DisplayName != nil {
		in.DisplayName = *body.DisplayName
	}
	if c := body.Credentials; c != nil {
		in.ClientID, in.ClientSecret, in.Scopes = deref(c.ClientId), deref(c.ClientSecret), deref(c.Scopes)
		in.AppID, in.AppLink = deref(c.AppId), deref(c.AppLink)
		if c.PrivateKey != nil {
			in.PrivateKey = []byte(*c.PrivateKey)
		}
	}
	if body.ApiBaseUrl != nil {
		if mode != "APP" {
			return nil, invalidBody("api_base_url is for auth mode APP only", detail("unrecognized_keys", "Only for APP", []string{"api_base_url"}))
		}
		if _, err := store.NormalizeAPIBaseURL(*body.ApiBaseUrl); err != nil {
			return nil, invalidBody(err.Error(), detail("invalid_string", "Invalid URL", []string{"api_base_url"}))
		}
		in.APIBaseURL = *body.ApiBaseUrl
	}
	if err := refreshSettings(&in, entry, known, body.TokenUrl, (*string)(body.TokenAuth)); err != nil {
		return nil, err
	}
	created, err := is.CreateIntegration(ctx, in)
	if errors.Is(err, store.ErrConflict) {
		return nil, invalidBody("Invalid request body", detail("invalid_string", "Unique key already exists", []string{"uniqueKey"}))
	}
	if err != nil {
		return nil, fmt.Errorf("create integration: %w", err)
	}
	s.integrations.forget(integrationKey{key.EnvironmentID, created.UniqueKey})
	notes(ctx).addAudit("integration", created.UniqueKey, "outcome", "created", "provider", created.Provider,
		"auth_mode", created.AuthMode)
	return gen.CreateIntegration200JSONResponse{Data: s.integrationView(created)}, nil
}

// refreshSettings fills in where an OAUTH2 integration renews tokens: the body's token URL, else
// the catalog's when the integration has a client to renew with, as the CLI does.
func refreshSettings(in *store.NewIntegration, entry provider.Entry, known bool, tokenURL, tokenAuth *string) error {
	refreshes := in.AuthMode == "OAUTH2" || in.AuthMode == "OAUTH2_CC"
	if !refreshes && (tokenURL != nil || tokenAuth != nil) {
		return invalidBody("token_url and token_auth are for auth modes OAUTH2 and OAUTH2_CC only",
			detail("unrecognized_keys", "Only for OAUTH2 and OAUTH2_CC", []string{"token_url"}))
	}
	if tokenAuth != nil {
		in.TokenAuth = *tokenAuth
	}
	if tokenURL != nil && *tokenURL != "" {
		if err := provider.CheckTokenURL(*tokenURL); err != nil {
			return invalidBody(err.Error(), detail("invalid_string", "Invalid URL", []string{"token_url"}))
		}
		in.TokenURL = *tokenURL
	} else if known && refreshes && entry.TokenURL != "" && in.ClientID != "" {
		in.TokenURL = entry.TokenURL
		if in.TokenAuth == "" {
			in.TokenAuth = entry.TokenAuth
		}
	}
	if in.TokenURL == "" && in.TokenAuth != "" {
		return invalidBody("token_auth needs a token URL", detail("invalid_type", "Needs token_url", []string{"token_url"}))
	}
	if in.TokenURL != "" && in.AuthMode == "OAUTH2" && in.ClientID == "" {
		return invalidBody("Refreshing OAUTH2 tokens needs the integration's client id and secret")
	}
	if in.AuthMode == "OAUTH2_CC" && in.Scopes != "" {
		// A client credentials grant asks for space-separated scopes.
		in.Scopes = ""
	}
	return nil
}

// checkIntegrationCredentials checks credentials against the integration's auth mode: OAUTH1,
// OAUTH2 and TBA take a client, APP a GitHub App; each refuses the other's fields.
func checkIntegrationCredentials(c *gen.IntegrationCredentialsInput, mode string) error {
	if c == nil {
		return nil
	}
	if string(c.Type) != mode {
		return invalidBody(msgIncompatibleCredentials)
	}
	fields := map[string]*string{"client_id": c.ClientId, "client_secret": c.ClientSecret, "scopes": c.Scopes,
		"app_id": c.AppId, "app_link": c.AppLink, "private_key": c.PrivateKey}
	required, allowed := []string{"client_id", "client_secret"}, []string{"client_id", "client_secret", "scopes"}
	if mode == "APP" {
		required, allowed = []string{"app_id", "app_link", "private_key"}, []string{"app_id", "app_link", "private_key"}
	}
	var details []gen.ErrorDetail
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		set := fields[name] != nil
		switch {
		case !set && slices.Contains(required, name):
			details = append(details, detail("invalid_type", "Required", []string{"credentials", name}))
		case set && !slices.Contains(allowed, name):
			details = append(details, detail("unrecognized_keys", "Not a field of "+mode+" credentials", []string{"credentials", name}))
		}
	}
	if len(details) > 0 {
		return invalidBody("Invalid request body", details...)
	}
	if c.PrivateKey != nil {
		if _, err := store.ParseAppPrivateKey([]byte(*c.PrivateKey)); err != nil {
			return invalidBody("Invalid request body", detail("invalid_string", err.Error(), []string{"credentials", "private_key"}))
		}
	}
	return nil
}

// UpdateIntegration changes the fields the body sends.
func (s *Server) UpdateIntegration(ctx context.Context, req gen.UpdateIntegrationRequestObject) (gen.UpdateIntegrationResponseObject, error) {
	key, ok := principal(ctx)
	if !ok {
		return nil, errors.New("update integration: no authenticated key")
	}
	is, err := s.integrationStore()
	if err != nil {
		return nil, err
	}
	current, err := s.store.FindIntegration(ctx, key.EnvironmentID, req.UniqueKey)
	if errors.Is(err, store.ErrNotFound) {
		return nil, integrationNotFound(req.UniqueKey)
	}
	if err != nil {
		return nil, fmt.Errorf("update integration: %w", err)
	}
	body := req.Body
	if err := checkIntegrationCredentials(body.Credentials, current.AuthMode); err != nil {
		return nil, err
	}
	up := store.IntegrationUpdate{
		EnvironmentID: key.EnvironmentID, UniqueKey: req.UniqueKey,
		NewUniqueKey: body.UniqueKey, DisplayName: body.DisplayName, ForwardWebhooks: body.ForwardWebhooks,
		TokenURL: body.TokenUrl, TokenAuth: (*string)(body.TokenAuth),
	}
	clientID := current.ClientID
	if c := body.Credentials; c != nil {
		up.ClientID, up.ClientSecret, up.Scopes = c.ClientId, c.ClientSecret, c.Scopes
		up.AppID, up.AppLink = c.AppId, c.AppLink
		if c.PrivateKey != nil {
			up.PrivateKey = []byte(*c.PrivateKey)
		}
		if c.ClientId != nil {
			clientID = *c.ClientId
		}
	}
	if err := checkRefreshUpdate(current, clientID, body.TokenUrl, (*string)(body.TokenAuth)); err != nil {
		return nil, err
	}
	updated, err := is.UpdateIntegration(ctx, up)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, integrationNotFound(req.UniqueKey)
	case errors.Is(err, store.ErrConflict):
		return nil, invalidBody("uniqueKey is already used by another integration")
	case errors.Is(err, store.ErrHasConnections):
		return nil, invalidBody("Can't rename an integration with active connections")
	case err != nil:
		return nil, fmt.Errorf("update integration: %w", err)
	}
	s.integrations.forget(integrationKey{key.EnvironmentID, req.UniqueKey})
	s.integrations.forget(integrationKey{key.EnvironmentID, updated.UniqueKey})
	notes(ctx).addAudit("integration", req.UniqueKey, "outcome", "updated", "unique_key", updated.UniqueKey,
		"credentials", body.Credentials != nil)
	return gen.UpdateIntegration200JSONResponse{Data: s.integrationView(updated)}, nil
}

// checkRefreshUpdate refuses token settings the integration cannot use once updated.
func checkRefreshUpdate(current store.Integration, clientID string, tokenURL, tokenAuth *string) error {
	if tokenURL == nil && tokenAuth == nil {
		return nil
	}
	if current.AuthMode != "OAUTH2" && current.AuthMode != "OAUTH2_CC" {
		return invalidBody("token_url and token_auth are for auth modes OAUTH2 and OAUTH2_CC only",
			detail("unrecognized_keys", "Only for OAUTH2 and OAUTH2_CC", []string{"token_url"}))
	}
	finalURL := current.TokenURL
	if tokenURL != nil {
		finalURL = *tokenURL
	}
	if finalURL == "" {
		if tokenAuth != nil {
			return invalidBody("token_auth needs a token URL", detail("invalid_type", "Needs token_url", []string{"token_url"}))
		}
		return nil
	}
	if err := provider.CheckTokenURL(finalURL); err != nil {
		return invalidBody(err.Error(), detail("invalid_string", "Invalid URL", []string{"token_url"}))
	}
	if current.AuthMode == "OAUTH2" && clientID == "" {
		return invalidBody("Refreshing OAUTH2 tokens needs the integration's client id and secret")
	}
	return nil
}

// DeleteIntegration removes the integration and its connections, and forgets it at once.
func (s *Server) DeleteIntegration(ctx context.Context, req gen.DeleteIntegrationRequestObject) (gen.DeleteIntegrationResponseObject, error) {
	key, ok := principal(ctx)
	if !ok {
		return nil, errors.New("delete integration: no authenticated key")
	}
	is, err := s.integrationStore()
	if err != nil {
		return nil, err
	}
	removed, err := is.DeleteIntegration(ctx, key.EnvironmentID, req.UniqueKey)
	if errors.Is(err, store.ErrNotFound) {
		return nil, apiError(gen.ErrorCodeNotFound, msgDeleteNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("delete integration: %w", err)
	}
	s.integrations.forget(integrationKey{key.EnvironmentID, req.UniqueKey})
	notes(ctx).addAudit("integration", req.UniqueKey, "outcome", "deleted", "connections_deleted", removed)
	return gen.DeleteIntegration200JSONResponse{Success: true}, nil
}

// integrationView is an integration as the reference formats it, without credentials.
func (s *Server) integrationView(in store.Integration) gen.Integration {
	name := in.DisplayName
	if name == "" {
		name = in.Provider
		if e, ok := s.providers[in.Provider]; ok {
			name = e.DisplayName
		}
	}
	return gen.Integration{
		UniqueKey:       in.UniqueKey,
		Provider:        in.Provider,
		DisplayName:     name,
		Logo:            logoBaseURL + url.PathEscape(in.Provider) + ".svg",
		ForwardWebhooks: in.ForwardWebhooks,
		CreatedAt:       in.CreatedAt.UTC().Format(isoMillis),
		UpdatedAt:       in.UpdatedAt.UTC().Format(isoMillis),
	}
}

// integrationCredentials is the credentials object of an integration, by its auth mode; null for
// modes whose integrations hold none.
func (s *Server) integrationCredentials(ctx context.Context, in store.Integration) (json.RawMessage, error) {
	is, err := s.integrationStore()
	if err != nil {
		return nil, err
	}
	var view any
	switch in.AuthMode {
	case "OAUTH1", "OAUTH2", "TBA":
		secrets, err := is.OpenIntegrationSecrets(ctx, in)
		if err != nil {
			return nil, err
		}
		view = gen.IntegrationOAuthCredentials{
			Type:     gen.IntegrationOAuthCredentialsType(in.AuthMode),
			ClientId: nullable(in.ClientID), ClientSecret: nullable(secrets.ClientSecret), Scopes: nullable(in.Scopes),
		}
	case "APP":
		secrets, err := is.OpenIntegrationSecrets(ctx, in)
		if err != nil {
			return nil, err
		}
		view = gen.IntegrationAppCredentials{
			Type:  "APP",
			AppId: nullable(in.AppID), PrivateKey: nullable(secrets.PrivateKeyPEM), AppLink: nullable(in.AppLink),
		}
	default:
		return json.RawMessage("null"), nil
	}
	return json.Marshal(view)
}

// nullable is s, or nil for "".
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
