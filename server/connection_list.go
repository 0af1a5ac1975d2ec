package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/credport/credport/gen"
	"github.com/credport/credport/store"
)

// defaultListLimit is the page size when the request names none (DESIGN.md, "List limit").
const defaultListLimit = 10000

// listTagKey is the pattern of a tag key, as openapi.yaml's TagKey declares it.
var listTagKey = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_\-./]*$`)

// ListConnections lists the environment's connections, newest first, never with credentials.
func (s *Server) ListConnections(ctx context.Context, req gen.ListConnectionsRequestObject) (gen.ListConnectionsResponseObject, error) {
	key, ok := principal(ctx)
	if !ok {
		return nil, errors.New("list connections: no authenticated key")
	}
	p := req.Params
	in := store.ListConnections{EnvironmentID: key.EnvironmentID, Limit: defaultListLimit}
	for _, f := range []struct {
		from *gen.FilterString
		to   *string
	}{
		{p.ConnectionId, &in.ConnectionID},
		{p.Search, &in.Search},
		{p.EndUserId, &in.EndUserID},
		{p.EndUserOrganizationId, &in.EndUserOrganizationID},
	} {
		if f.from != nil {
			*f.to = *f.from
		}
	}
	if p.IntegrationId != nil {
		for _, k := range strings.Split(*p.IntegrationId, ",") {
			if k = strings.TrimSpace(k); k != "" && !slices.Contains(in.ProviderConfigKeys, k) {
				in.ProviderConfigKeys = append(in.ProviderConfigKeys, k)
			}
		}
	}
	if p.Tags != nil && len(*p.Tags) > 0 {
		var details []gen.ErrorDetail
		for _, k := range sortedKeys(*p.Tags) {
			if len(k) > 64 || !listTagKey.MatchString(k) {
				details = append(details, detail("invalid_key", "Invalid key in record", []string{"tags", k}))
			}
		}
		if len(details) > 0 {
			return nil, newError(http.StatusBadRequest, "invalid_query_params", "Invalid query parameters", details...)
		}
		in.Tags = *p.Tags
	}
	if p.Limit != nil {
		in.Limit = *p.Limit
	}
	if p.Page != nil {
		in.Offset = *p.Page * in.Limit
	}
	rows, err := s.store.ListConnections(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("list connections: %w", err)
	}
	out := gen.ListConnections200JSONResponse{Connections: make([]gen.ConnectionListItem, 0, len(rows))}
	for _, c := range rows {
		item := gen.ConnectionListItem{
			Id:                c.ID,
			ConnectionId:      c.ConnectionID,
			ProviderConfigKey: c.ProviderConfigKey,
			Provider:          c.Provider,
			Errors:            []gen.ConnectionError{},
			Created:           c.CreatedAt.UTC(),
		}
		if err := json.Unmarshal(c.Tags, &item.Tags); err != nil {
			return nil, fmt.Errorf("list connections: decode stored tags: %w", err)
		}
		metadata := jsonObjectOrEmpty(c.Metadata)
		item.Metadata = &metadata
		if len(c.EndUser) > 0 {
			var endUser gen.ConnectionEndUser
			if err := json.Unmarshal(c.EndUser, &endUser); err != nil {
				return nil, fmt.Errorf("list connections: decode stored end_user: %w", err)
			}
			item.EndUser = &endUser
		}
		out.Connections = append(out.Connections, item)
	}
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
