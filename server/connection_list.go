package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

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
	page, err := encodeListPage(rows)
	if err != nil {
		return nil, fmt.Errorf("list connections: %w", err)
	}
	return page, nil
}

// listPage is the 200 answer of a list, gen.ConnectionList encoded here rather than by the
// generated code: that one decodes and re-encodes every connection's tags and compacts its
// metadata again, which cost a page of 100 most of its CPU. Stored tags and metadata are JSON
// objects the server validated on the way in, so they are written as stored. The tests validate
// every answer against openapi.yaml.
type listPage []byte

func (p listPage) VisitListConnectionsResponse(w http.ResponseWriter) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(p)
	return err
}

func (p listPage) VisitListConnectionsLegacyResponse(w http.ResponseWriter) error {
	return p.VisitListConnectionsResponse(w)
}

// encodeListPage writes rows as {"connections":[ConnectionListItem...]}, keys in the order the
// generated encoder writes them.
func encodeListPage(rows []store.ListedConnection) (listPage, error) {
	b := make([]byte, 0, 64+len(rows)*512)
	b = append(b, `{"connections":[`...)
	for i, c := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"connection_id":`...)
		b = appendJSON(b, c.ConnectionID)
		b = append(b, `,"created":"`...)
		b = c.CreatedAt.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","end_user":`...)
		if len(c.EndUser) > 0 {
			// Stored as sent; the answer has every key of ConnectionEndUser, null when unknown.
			var endUser gen.ConnectionEndUser
			if err := json.Unmarshal(c.EndUser, &endUser); err != nil {
				return nil, fmt.Errorf("decode stored end_user: %w", err)
			}
			b = appendJSON(b, endUser)
		} else {
			b = append(b, "null"...)
		}
		b = append(b, `,"errors":`...)
		b = appendListErrors(b, c)
		b = append(b, `,"id":`...)
		b = strconv.AppendInt(b, c.ID, 10)
		b = append(b, `,"metadata":`...)
		b = append(b, jsonObjectOrEmpty(c.Metadata)...)
		b = append(b, `,"provider":`...)
		b = appendJSON(b, c.Provider)
		b = append(b, `,"provider_config_key":`...)
		b = appendJSON(b, c.ProviderConfigKey)
		b = append(b, `,"tags":`...)
		b = append(b, jsonObjectOrEmpty(c.Tags)...)
		b = append(b, '}')
	}
	b = append(b, "]}\n"...)
	return listPage(b), nil
}

// appendListErrors appends a listed connection's errors as GET /connections/{connectionId} shows
// them: the auth error of the provider's last refusal, while refusals are counted.
func appendListErrors(b []byte, c store.ListedConnection) []byte {
	if c.RefreshFailures == 0 {
		return append(b, "[]"...)
	}
	return appendJSON(b, connectionErrors(c.RefreshFailures, c.RefreshLogID))
}

// appendJSON appends v encoded as encoding/json encodes it; v cannot fail to encode.
func appendJSON(b []byte, v any) []byte {
	data, _ := json.Marshal(v)
	return append(b, data...)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
