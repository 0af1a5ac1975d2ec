package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/uuid"

	"github.com/credport/credport/gen"
	"github.com/credport/credport/store"
)

// ImportConnection creates or updates a connection with the credentials the caller already has.
func (s *Server) ImportConnection(ctx context.Context, req gen.ImportConnectionRequestObject) (gen.ImportConnectionResponseObject, error) {
	key, ok := principal(ctx)
	if !ok {
		return nil, errors.New("import connection: no authenticated key")
	}
	body := req.Body
	integration, err := s.store.FindIntegration(ctx, key.EnvironmentID, body.ProviderConfigKey)
	if errors.Is(err, store.ErrNotFound) {
		return nil, newError(http.StatusNotFound, "not_found", "Integration does not exist")
	}
	if err != nil {
		return nil, fmt.Errorf("import connection: %w", err)
	}
	credType, err := body.Credentials.Discriminator()
	if err != nil {
		return nil, fmt.Errorf("import connection: %w", err)
	}
	if credType != integration.AuthMode {
		return nil, invalidBody(fmt.Sprintf("Provider %s does not support %s auth", integration.AuthMode, credType),
			detail("invalid_auth_mode", "The integration's auth mode is "+integration.AuthMode, []string{"credentials", "type"}))
	}
	switch credType {
	case "APP":
		return nil, invalidBody(fmt.Sprintf("Integration %q has no GitHub App configured", integration.UniqueKey),
			detail("app_not_configured", "The integration has no GitHub App configured", []string{"credentials", "app_id"}))
	case "TBA":
		if id, _ := mapValue(body.ConnectionConfig, "accountId").(string); id == "" {
			return nil, invalidBody("TBA credentials need connection_config.accountId",
				detail("invalid_type", "Required", []string{"connection_config", "accountId"}))
		}
	}
	credentials, expiresAt, err := storedCredentials(body.Credentials)
	if err != nil {
		return nil, fmt.Errorf("import connection: %w", err)
	}

	in := store.UpsertConnection{
		EnvironmentID:        key.EnvironmentID,
		Integration:          integration,
		ConnectionID:         uuid.NewString(),
		Credentials:          credentials,
		CredentialsExpiresAt: expiresAt,
	}
	if body.ConnectionId != nil {
		in.ConnectionID = *body.ConnectionId
	}
	if in.ConnectionConfig, err = marshalIfSet(body.ConnectionConfig); err != nil {
		return nil, err
	}
	if in.Metadata, err = marshalIfSet(body.Metadata); err != nil {
		return nil, err
	}
	if body.Tags != nil || body.EndUser != nil {
		tags, errs := mergeTags(body.Tags, body.EndUser)
		if len(errs) == 0 {
			errs = s.validate.validateValue(s.tags, stringMapToAny(tags), []string{"tags"})
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

	conn, err := s.store.UpsertConnection(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("import connection: %w", err)
	}
	notes(ctx).created = &conn.Created
	outcome := "updated"
	if conn.Created {
		outcome = "created"
	}
	s.log.InfoContext(ctx, "connection imported", "environment", key.Environment, "key_id", key.ID,
		"integration", integration.UniqueKey, "connection_id", conn.ConnectionID, "type", credType, "outcome", outcome)
	full, err := connectionFull(conn)
	if err != nil {
		return nil, fmt.Errorf("import connection: %w", err)
	}
	return gen.ImportConnection200JSONResponse{
		Body:    full,
		Headers: gen.ImportConnection200ResponseHeaders{CacheControl: "no-store"},
	}, nil
}

// connectionFull renders a stored connection as the API's ConnectionFull.
func connectionFull(c store.Connection) (gen.ConnectionFull, error) {
	full := gen.ConnectionFull{
		Id:                c.ID,
		ConnectionId:      c.ConnectionID,
		ProviderConfigKey: c.ProviderConfigKey,
		Provider:          c.Provider,
		Errors:            []gen.ConnectionError{},
		Metadata:          map[string]any{},
		ConnectionConfig:  map[string]any{},
		CreatedAt:         c.CreatedAt.UTC(),
		UpdatedAt:         c.UpdatedAt.UTC(),
		LastFetchedAt:     c.LastFetchedAt.UTC(),
	}
	for _, f := range []struct {
		name string
		data json.RawMessage
		into any
	}{
		{"metadata", c.Metadata, &full.Metadata},
		{"connection_config", c.ConnectionConfig, &full.ConnectionConfig},
		{"tags", c.Tags, &full.Tags},
		{"credentials", c.Credentials, &full.Credentials},
	} {
		if len(f.data) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(f.data))
		dec.UseNumber() // numbers in metadata come back exactly as stored
		if err := dec.Decode(f.into); err != nil {
			return gen.ConnectionFull{}, fmt.Errorf("decode stored %s: %w", f.name, err)
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

func marshalIfSet(m *map[string]any) (json.RawMessage, error) {
	if m == nil {
		return nil, nil
	}
	data, err := json.Marshal(*m)
	if err != nil {
		return nil, fmt.Errorf("encode object: %w", err)
	}
	return data, nil
}

func mapValue(m *map[string]any, key string) any {
	if m == nil {
		return nil
	}
	return (*m)[key]
}

func stringMapToAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
