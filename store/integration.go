package store

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/credport/credport/provider"
)

// Integration is a provider configuration; connections belong to one. Its client secret and its
// GitHub App private key stay sealed in the database and are not part of this value.
type Integration struct {
	ID              int64
	EnvironmentID   int64
	UniqueKey       string
	Provider        string
	AuthMode        string
	ClientID        string
	HasClientSecret bool
	// AppID is the GitHub App of an APP integration, "" when none is configured; APIBaseURL is
	// the API it lives on. Its private key is opened by AppPrivateKey.
	AppID         string
	APIBaseURL    string
	HasPrivateKey bool
	// TokenURL is where OAUTH2 and OAUTH2_CC tokens are renewed, "" when refresh is not
	// configured; TokenAuth is how the client authenticates there (provider.AuthBody or
	// provider.AuthBasic) and Scopes the space-separated scopes a client credentials grant asks for.
	TokenURL  string
	TokenAuth string
	Scopes    string
	// DisplayName is "" when none is stored; ForwardWebhooks defaults to true; AppLink is the
	// GitHub App's page, "" when not given.
	DisplayName     string
	ForwardWebhooks bool
	AppLink         string
	CreatedAt       time.Time
	// UpdatedAt is CreatedAt until the integration is changed.
	UpdatedAt time.Time
}

// NewIntegration is what CreateIntegration needs.
type NewIntegration struct {
	Environment  string
	UniqueKey    string
	Provider     string
	AuthMode     string
	ClientID     string
	ClientSecret string
	// AppID and PrivateKey (an RSA key in PEM, PKCS#1 or PKCS#8) configure the GitHub App of an
	// APP integration; they go together. APIBaseURL defaults to DefaultGitHubAPIBaseURL.
	AppID      string
	PrivateKey []byte
	APIBaseURL string
	// TokenURL, TokenAuth (default provider.AuthBody) and Scopes configure token refresh of an OAUTH2
	// or OAUTH2_CC integration.
	TokenURL  string
	TokenAuth string
	Scopes    string
	// DisplayName and AppLink are stored when not ""; ForwardWebhooks nil means true.
	DisplayName     string
	ForwardWebhooks *bool
	AppLink         string
}

// CreateIntegration adds an integration to an environment (created when new). A second
// integration with the same unique key in one environment is ErrConflict. A GitHub App whose
// key or API URL is unusable is refused before anything is written.
func (db *DB) CreateIntegration(ctx context.Context, in NewIntegration) (Integration, error) {
	app, err := newAppConfig(in)
	if err != nil {
		return Integration{}, err
	}
	if err := checkRefreshConfig(&in); err != nil {
		return Integration{}, err
	}
	envID, err := db.EnsureEnvironment(ctx, in.Environment)
	if err != nil {
		return Integration{}, err
	}
	row := integrationRow{
		EnvironmentID: envID,
		UniqueKey:     in.UniqueKey,
		Provider:      in.Provider,
		AuthMode:      in.AuthMode,
		CreatedAt:     db.now(),
		// The reference forwards webhooks unless told otherwise.
		ForwardWebhooks: in.ForwardWebhooks == nil || *in.ForwardWebhooks,
	}
	row.UpdatedAt = &row.CreatedAt
	if in.DisplayName != "" {
		row.DisplayName = &in.DisplayName
	}
	if in.AppLink != "" {
		row.AppLink = &in.AppLink
	}
	if in.ClientID != "" {
		row.ClientID = &in.ClientID
	}
	if in.ClientSecret != "" {
		sealed, err := db.keys.Seal([]byte(in.ClientSecret), integrationAAD(envID, in.UniqueKey))
		if err != nil {
			return Integration{}, err
		}
		row.ClientSecret = &sealed
	}
	if app != nil {
		sealed, err := db.keys.Seal(app.keyDER, appKeyAAD(envID, in.UniqueKey))
		if err != nil {
			return Integration{}, err
		}
		row.AppID, row.PrivateKey, row.APIBaseURL = &in.AppID, &sealed, &app.apiBaseURL
	}
	if in.TokenURL != "" {
		row.TokenURL, row.TokenAuth = &in.TokenURL, &in.TokenAuth
	}
	if in.Scopes != "" {
		row.Scopes = &in.Scopes
	}
	err = db.gorm.WithContext(ctx).Create(&row).Error
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return Integration{}, fmt.Errorf("integration %q in environment %q: %w", in.UniqueKey, in.Environment, ErrConflict)
	}
	if err != nil {
		return Integration{}, fmt.Errorf("create integration: %w", err)
	}
	return row.integration(), nil
}

// ListIntegrations lists the integrations of environment env by unique key.
func (db *DB) ListIntegrations(ctx context.Context, env string) ([]Integration, error) {
	envID, err := db.environmentID(ctx, env)
	if err != nil {
		return nil, err
	}
	return db.listIntegrations(ctx, envID, "unique_key")
}

// FindIntegration returns the integration uniqueKey of environment envID.
func (db *DB) FindIntegration(ctx context.Context, envID int64, uniqueKey string) (Integration, error) {
	var row integrationRow
	err := db.gorm.WithContext(ctx).Where("environment_id = ? AND unique_key = ?", envID, uniqueKey).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return Integration{}, fmt.Errorf("integration %q: %w", uniqueKey, ErrNotFound)
	}
	if err != nil {
		return Integration{}, fmt.Errorf("find integration %q: %w", uniqueKey, err)
	}
	return row.integration(), nil
}

func (r integrationRow) integration() Integration {
	in := Integration{
		ID:              r.ID,
		EnvironmentID:   r.EnvironmentID,
		UniqueKey:       r.UniqueKey,
		Provider:        r.Provider,
		AuthMode:        r.AuthMode,
		HasClientSecret: r.ClientSecret != nil,
		HasPrivateKey:   r.PrivateKey != nil,
		ForwardWebhooks: r.ForwardWebhooks,
		CreatedAt:       r.CreatedAt,
		UpdatedAt:       r.CreatedAt,
	}
	if r.UpdatedAt != nil {
		in.UpdatedAt = *r.UpdatedAt
	}
	in.DisplayName, in.AppLink = deref(r.DisplayName), deref(r.AppLink)
	in.ClientID, in.AppID, in.APIBaseURL = deref(r.ClientID), deref(r.AppID), deref(r.APIBaseURL)
	in.TokenURL, in.TokenAuth, in.Scopes = deref(r.TokenURL), deref(r.TokenAuth), deref(r.Scopes)
	return in
}

// deref is the string p points to, "" when nil.
func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// checkRefreshConfig checks the token refresh settings of a new integration and fills in the
// default client authentication.
func checkRefreshConfig(in *NewIntegration) error {
	if in.TokenURL == "" {
		// OAUTH1 and OAUTH2 integrations keep the scopes they were configured with; only a client
		// credentials grant asks for them, at its token URL.
		if in.TokenAuth != "" || (in.Scopes != "" && in.AuthMode != "OAUTH1" && in.AuthMode != "OAUTH2" && in.AuthMode != "TBA") {
			return errors.New("a token auth method or scopes need a token URL")
		}
		return nil
	}
	if in.AuthMode != "OAUTH2" && in.AuthMode != "OAUTH2_CC" {
		return fmt.Errorf("a token URL needs auth mode OAUTH2 or OAUTH2_CC, not %s", in.AuthMode)
	}
	if in.AuthMode == "OAUTH2" && in.ClientID == "" {
		return errors.New("refreshing OAUTH2 tokens needs the integration's client id and secret")
	}
	if err := provider.CheckTokenURL(in.TokenURL); err != nil {
		return err
	}
	switch in.TokenAuth {
	case "":
		in.TokenAuth = provider.AuthBody
	case provider.AuthBody, provider.AuthBasic:
	default:
		return fmt.Errorf("token auth %q: want %s or %s", in.TokenAuth, provider.AuthBody, provider.AuthBasic)
	}
	return nil
}

// IntegrationClientSecret opens the integration's client secret; "" when it has none.
func (db *DB) IntegrationClientSecret(ctx context.Context, in Integration) (string, error) {
	var sealed *string
	err := db.gorm.WithContext(ctx).Raw("SELECT client_secret FROM integrations WHERE id = ?", in.ID).Row().Scan(&sealed)
	if err != nil {
		return "", fmt.Errorf("client secret of integration %q: %w", in.UniqueKey, dbError(err))
	}
	if sealed == nil {
		return "", nil
	}
	plain, err := db.keys.Open(*sealed, integrationAAD(in.EnvironmentID, in.UniqueKey))
	if err != nil {
		return "", fmt.Errorf("client secret of integration %q: %w", in.UniqueKey, err)
	}
	return string(plain), nil
}

// appConfig is a GitHub App ready to be stored: its key re-encoded as PKCS#8 DER, so that only
// the key is sealed, whatever else the PEM file held.
type appConfig struct {
	keyDER     []byte
	apiBaseURL string
}

// newAppConfig checks the GitHub App of a new integration; it is nil when none is given.
func newAppConfig(in NewIntegration) (*appConfig, error) {
	if in.AppID == "" && len(in.PrivateKey) == 0 && in.APIBaseURL == "" {
		return nil, nil
	}
	if in.AuthMode != "APP" {
		return nil, fmt.Errorf("a GitHub App (app id, private key, API base URL) needs auth mode APP, not %s", in.AuthMode)
	}
	if in.AppID == "" || len(in.PrivateKey) == 0 {
		return nil, errors.New("a GitHub App needs both an app id and a private key")
	}
	if strings.TrimSpace(in.AppID) != in.AppID {
		return nil, fmt.Errorf("app id %q: surrounding spaces", in.AppID)
	}
	key, err := ParseAppPrivateKey(in.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	base, err := NormalizeAPIBaseURL(in.APIBaseURL)
	if err != nil {
		return nil, err
	}
	return &appConfig{keyDER: der, apiBaseURL: base}, nil
}

// integrationAAD binds an integration's sealed secrets to the integration.
func integrationAAD(envID int64, uniqueKey string) []byte {
	return []byte("integration\x00" + strconv.FormatInt(envID, 10) + "\x00" + uniqueKey)
}
