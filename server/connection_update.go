package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/credport/credport/gen"
	"github.com/credport/credport/store"
	"github.com/credport/credport/webhook"
)

// PatchConnection replaces a connection's tags and end user, and sets or clears its webhook URL
// override.
func (s *Server) PatchConnection(ctx context.Context, req gen.PatchConnectionRequestObject) (gen.PatchConnectionResponseObject, error) {
	key, ok := principal(ctx)
	if !ok {
		return nil, errors.New("patch connection: no authenticated key")
	}
	body := req.Body
	in := store.PatchConnection{EnvironmentID: key.EnvironmentID, ConnectionID: req.ConnectionId}
	if body.WebhookUrlOverride != nil {
		if err := s.checkWebhookURL(ctx, *body.WebhookUrlOverride); err != nil {
			return nil, err
		}
		in.WebhookURLOverride = body.WebhookUrlOverride
	}
	var err error
	if body.Tags != nil || body.EndUser != nil {
		tags, errs := mergeTags(body.Tags, body.EndUser)
		if len(errs) == 0 {
			errs = s.validate.ValidateValue(s.tags, stringMapToAny(tags), []string{"tags"})
		}
		if len(errs) > 0 {
			return nil, invalidBody("Invalid tags", errs...)
		}
		if in.Tags, err = json.Marshal(tags); err != nil {
			return nil, fmt.Errorf("patch connection: %w", err)
		}
	}
	if body.EndUser != nil {
		if in.EndUser, err = json.Marshal(body.EndUser); err != nil {
			return nil, fmt.Errorf("patch connection: %w", err)
		}
	}
	integration, err := s.integrations.get(ctx, integrationKey{key.EnvironmentID, req.Params.ProviderConfigKey})
	if errors.Is(err, store.ErrNotFound) {
		return nil, errUnknownProviderConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("patch connection: %w", err)
	}
	in.ProviderConfigKey = integration.UniqueKey
	err = s.store.PatchConnection(ctx, in)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errConnectionNotFound()
	}
	if err != nil {
		return nil, fmt.Errorf("patch connection: %w", err)
	}
	return gen.PatchConnection200JSONResponse{Success: true}, nil
}

// checkWebhookURL accepts "" (clear) or an http(s) URL that points neither at Nango nor at an
// address the outbound policy refuses (webhook.ValidateURL); delivery checks the address it
// dials again.
func (s *Server) checkWebhookURL(ctx context.Context, raw string) error {
	if raw == "" {
		return nil
	}
	at := []string{"webhook_url_override"}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return invalidBody("Invalid request body", detail("invalid_format", "Invalid URL", at))
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if host == "nango.dev" || strings.HasSuffix(host, ".nango.dev") {
		return invalidBody("Invalid request body", detail("custom", "Webhook URLs cannot point to Nango's domain (nango.dev).", at))
	}
	private := host == "localhost" || strings.HasSuffix(host, ".localhost") || strings.HasSuffix(host, ".local") || strings.HasSuffix(host, ".internal")
	if private && !s.outboundAllowPrivate {
		return invalidBody("Invalid request body", detail("custom", "This webhook URL is not allowed.", at))
	}
	if err := webhook.ValidateURL(ctx, raw, s.outboundAllowPrivate, s.resolver); err != nil {
		return invalidBody("Invalid request body", detail("custom", "This webhook URL is not allowed.", at))
	}
	return nil
}

// SetMetadata replaces the metadata of one or more connections.
func (s *Server) SetMetadata(ctx context.Context, req gen.SetMetadataRequestObject) (gen.SetMetadataResponseObject, error) {
	if err := s.writeMetadata(ctx, *req.Body, false); err != nil {
		return nil, err
	}
	return gen.SetMetadata201JSONResponse(*req.Body), nil
}

// UpdateMetadata shallow-merges metadata into one or more connections.
func (s *Server) UpdateMetadata(ctx context.Context, req gen.UpdateMetadataRequestObject) (gen.UpdateMetadataResponseObject, error) {
	if err := s.writeMetadata(ctx, *req.Body, true); err != nil {
		return nil, err
	}
	return gen.UpdateMetadata200JSONResponse(*req.Body), nil
}

func (s *Server) writeMetadata(ctx context.Context, body gen.MetadataRequest, merge bool) error {
	key, ok := principal(ctx)
	if !ok {
		return errors.New("metadata: no authenticated key")
	}
	var ids []string
	if err := json.Unmarshal(body.ConnectionId, &ids); err != nil {
		var one string
		if err := json.Unmarshal(body.ConnectionId, &one); err != nil {
			return fmt.Errorf("metadata: connection_id: %w", err)
		}
		ids = []string{one}
	}
	err := s.store.SetMetadata(ctx, key.EnvironmentID, body.ProviderConfigKey, ids, body.Metadata, merge)
	var missing *store.MissingConnectionError
	if errors.As(err, &missing) {
		msg := fmt.Sprintf("Connection with connection id %s and provider config key %s not found. Import it with POST /connections (or credport import), or list the connections with GET /connections",
			missing.ConnectionID, body.ProviderConfigKey)
		if len(ids) > 1 {
			msg += ". No actions were taken on any of the connections as a result of this failure."
		}
		return apiError(gen.ErrorCodeUnknownConnection, msg)
	}
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	return nil
}
