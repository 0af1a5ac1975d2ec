package store

import "time"

// GORM models: the tables as the migrations define them. They stay inside this package.

type environmentRow struct {
	ID        int64
	Name      string
	CreatedAt time.Time
}

func (environmentRow) TableName() string { return "environments" }

type apiKeyRow struct {
	ID            int64
	EnvironmentID int64
	Name          string
	SecretHash    string
	Scopes        string
	CreatedAt     time.Time
	RevokedAt     *time.Time
}

func (apiKeyRow) TableName() string { return "api_keys" }

type integrationRow struct {
	ID            int64
	EnvironmentID int64
	UniqueKey     string
	Provider      string
	AuthMode      string
	ClientID      *string
	ClientSecret  *string // sealed
	AppID         *string
	PrivateKey    *string // sealed
	APIBaseURL    *string `gorm:"column:api_base_url"`
	TokenURL      *string `gorm:"column:token_url"`
	TokenAuth     *string
	Scopes        *string
	// DisplayName, ForwardWebhooks, AppLink and UpdatedAt are what the integrations API shows.
	DisplayName     *string
	ForwardWebhooks bool
	AppLink         *string
	CreatedAt       time.Time
	UpdatedAt       *time.Time `gorm:"autoUpdateTime:false"`
}

func (integrationRow) TableName() string { return "integrations" }
