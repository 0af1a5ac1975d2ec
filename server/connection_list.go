package server

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/credport/credport/gen"
	"github.com/credport/credport/store"
)

// A list page holds at most its limit of connections (listDefaultLimit when the request names
// none) and ends before the connection that would take its body past listPageBytes, so that
// neither a default request nor a large limit makes a huge answer; it always holds one connection,
// however large. Its next_cursor continues it.
const (
	listDefaultLimit = 100
	listPageBytes    = 4 << 20
)

// ListConnections lists the environment's connections, newest first, never with credentials.
func (s *Server) ListConnections(ctx context.Context, req gen.ListConnectionsRequestObject) (gen.ListConnectionsResponseObject, error) {
	key, ok := principal(ctx)
	if !ok {
		return nil, errors.New("list connections: no authenticated key")
	}
	p := req.Params
	in := store.ListConnections{EnvironmentID: key.EnvironmentID}
	limit := listDefaultLimit
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
		// The keys are held to the rule of the keys of a body's tags (Tags.propertyNames).
		if details := s.validate.CheckPropertyNames(s.tags, stringMapToAny(*p.Tags), []string{"tags"}); len(details) > 0 {
			return nil, apiError(gen.ErrorCodeInvalidQueryParams, "Invalid query parameters", details...)
		}
		in.Tags = *p.Tags
	}
	if p.Limit != nil {
		limit = *p.Limit
	}
	switch {
	case p.Cursor != nil: // page is ignored: the validator fills in its default of 0
		offset, ok := decodeListCursor(*p.Cursor)
		if !ok {
			return nil, apiError(gen.ErrorCodeInvalidQueryParams, "Invalid query parameters",
				detail("invalid", "Not a cursor this server gave", []string{"cursor"}))
		}
		in.Offset = offset
	case p.Page != nil:
		in.Offset = *p.Page * limit
	}
	return listPage{ctx: ctx, store: s.store, log: s.log, in: in, limit: limit}, nil
}

// listPage is the 200 answer of a list, streamed: it is read in chunks (listChunkRows rows or
// about listChunkBytes, each chunk its own statement) and each chunk is written out before the
// next is read, so that neither the page is held whole nor a database connection waits on a slow
// client (SQLite has one). It is encoded here rather than by the generated code: that one decodes
// and re-encodes every connection's tags and compacts its metadata again, which cost a page of
// 100 most of its CPU. Stored tags and metadata are JSON objects the server validated on the way
// in, so they are written as stored. The tests validate every answer against openapi.yaml.
type listPage struct {
	ctx   context.Context
	store Store
	log   *slog.Logger
	in    store.ListConnections
	limit int
}

const (
	listChunkRows  = 256
	listChunkBytes = 256 << 10
)

// errChunkEnd stops the rows of a chunk that is complete.
var errChunkEnd = errors.New("list chunk is complete")

// listChunk is what one statement read: encoded items, and whether a row follows them.
type listChunk struct {
	buf  []byte
	ends []int // the end of each item in buf
	more bool
}

// readChunk reads up to max connections from offset, stopping early once the chunk holds
// listChunkBytes.
func (p listPage) readChunk(offset, max int, chunk *listChunk) error {
	chunk.buf, chunk.ends, chunk.more = chunk.buf[:0], chunk.ends[:0], false
	in := p.in
	in.Offset, in.Limit = offset, max+1 // one row more tells whether another follows
	err := p.store.ListConnections(p.ctx, in, func(c store.ListedConnection) error {
		if len(chunk.ends) == max || len(chunk.buf) >= listChunkBytes {
			chunk.more = true
			return errChunkEnd
		}
		var err error
		if chunk.buf, err = appendListItem(chunk.buf, c); err != nil {
			return err
		}
		chunk.ends = append(chunk.ends, len(chunk.buf))
		return nil
	})
	if errors.Is(err, errChunkEnd) {
		return nil
	}
	return err
}

func (p listPage) VisitListConnectionsResponse(w http.ResponseWriter) error {
	var (
		out     *bufio.Writer
		chunk   listChunk
		written int
		n       int
		next    = -1 // the offset of the next page, when one follows
	)
	start := func() {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		out = bufio.NewWriterSize(w, 32<<10)
		out.WriteString(`{"connections":[`)
	}
page:
	for {
		if err := p.readChunk(p.in.Offset+n, min(listChunkRows, p.limit-n), &chunk); err != nil {
			if out == nil {
				return fmt.Errorf("list connections: %w", err) // nothing sent yet: the error handler answers
			}
			// The status is sent: the client gets a cut JSON body, which it cannot take for a page.
			p.log.WarnContext(p.ctx, "list connections: page cut short", "error", err)
			return nil
		}
		if out == nil {
			start()
		}
		from := 0
		for _, end := range chunk.ends {
			item := chunk.buf[from:end]
			from = end
			if n > 0 && written+len(item) > listPageBytes {
				next = p.in.Offset + n
				break page
			}
			if n > 0 {
				out.WriteByte(',')
			}
			if _, err := out.Write(item); err != nil {
				return nil // the client went away
			}
			written += len(item) + 1
			n++
		}
		if !chunk.more {
			break
		}
		if n == p.limit {
			next = p.in.Offset + n
			break
		}
	}
	out.WriteByte(']')
	if next >= 0 {
		out.WriteString(`,"next_cursor":"` + encodeListCursor(next) + `"`)
	}
	out.WriteString("}\n")
	return out.Flush()
}

func (p listPage) VisitListConnectionsLegacyResponse(w http.ResponseWriter) error {
	return p.VisitListConnectionsResponse(w)
}

// A list cursor is the offset of the page it starts, versioned, in base64url.
const listCursorPrefix = "o1:"

func encodeListCursor(offset int) string {
	return base64.RawURLEncoding.EncodeToString([]byte(listCursorPrefix + strconv.Itoa(offset)))
}

func decodeListCursor(cursor string) (int, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return 0, false
	}
	digits, ok := strings.CutPrefix(string(raw), listCursorPrefix)
	if !ok {
		return 0, false
	}
	offset, err := strconv.Atoi(digits)
	if err != nil || offset < 0 || strconv.Itoa(offset) != digits {
		return 0, false
	}
	return offset, true
}

// appendListItem appends a listed connection as a ConnectionListItem, keys in the order the
// generated encoder writes them.
func appendListItem(b []byte, c store.ListedConnection) ([]byte, error) {
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
	return append(b, '}'), nil
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
