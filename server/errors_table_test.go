package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/gen"
	"github.com/credport/credport/store"
)

// TestErrorCodeStatuses requires the status table to hold every ErrorCode of openapi.yaml, and
// nothing else.
func TestErrorCodeStatuses(t *testing.T) {
	doc, err := contract.Load()
	if err != nil {
		t.Fatal(err)
	}
	ref := doc.Components.Schemas["ErrorCode"]
	if ref == nil || ref.Value == nil {
		t.Fatal("openapi.yaml has no ErrorCode schema")
	}
	spec := map[gen.ErrorCode]bool{}
	for _, v := range ref.Value.Enum {
		code := gen.ErrorCode(fmt.Sprint(v))
		spec[code] = true
		if _, ok := statusOf[code]; !ok {
			t.Errorf("code %s of openapi.yaml has no status in statusOf", code)
		}
	}
	for code := range statusOf {
		if !spec[code] {
			t.Errorf("statusOf has %s, which openapi.yaml's ErrorCode does not list", code)
		}
	}
}

// TestToAPIError covers the answers no request reaches easily: the second statuses, Retry-After,
// the sentinels of the store, and errors wrapped on their way up.
func TestToAPIError(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		status     int
		code       gen.ErrorCode
		message    string
		retryAfter int
	}{
		{"coded", fmt.Errorf("wrapped: %w", apiError(gen.ErrorCodeUnknownConnection, "gone")), 404, gen.ErrorCodeUnknownConnection, "gone", 0},
		{"delete unknown connection", errUnknownConnectionToDelete(), 400, gen.ErrorCodeUnknownConnection, "", 0},
		{"refresh impossible", apiError(gen.ErrorCodeInvalidCredentials, "no refresh token"), 400, gen.ErrorCodeInvalidCredentials, "no refresh token", 0},
		{"refresh refused", fmt.Errorf("refresh: %w", errRefreshRefused("refused")), 424, gen.ErrorCodeInvalidCredentials, "refused", 0},
		{"overloaded", errOverloaded(), 503, gen.ErrorCodeServerOverloaded, "The server is busy with other requests, retry later", 1},
		{"rate limited", errRateLimited(7), 429, gen.ErrorCodeTooManyRequests, "Rate limit exceeded for this API key", 7},
		{"contract", contract.InvalidBody("bad"), 400, gen.ErrorCodeInvalidBody, "bad", 0},
		{"content type", contract.NewError(gen.ErrorCodeInvalidContentType, "json only"), 415, gen.ErrorCodeInvalidContentType, "json only", 0},
		{"not found", fmt.Errorf("get: %w", store.ErrNotFound), 404, gen.ErrorCodeNotFound, "Not found", 0},
		{"parent gone", fmt.Errorf("import: %w", store.ErrParentNotFound), 404, gen.ErrorCodeNotFound, "Integration does not exist", 0},
		{"unavailable", fmt.Errorf("list: %w", store.ErrUnavailable), 503, gen.ErrorCodeDatabaseUnavailable, msgDatabaseUnavailable, databaseRetryAfter},
		{"deadline", fmt.Errorf("get: %w", context.DeadlineExceeded), 503, gen.ErrorCodeDatabaseUnavailable, msgDatabaseUnavailable, databaseRetryAfter},
		{"unexpected", errors.New("boom"), 500, gen.ErrorCodeServerError, msgUnexpected, 0},
		{"not of the spec", apiError("made_up", "x"), 500, gen.ErrorCodeServerError, msgUnexpected, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := toAPIError(tt.err)
			if got.Status != tt.status || got.Code != tt.code || got.Message != tt.message || got.RetryAfter != tt.retryAfter {
				t.Errorf("got %d %s %q retry %d, want %d %s %q retry %d", got.Status, got.Code, got.Message, got.RetryAfter,
					tt.status, tt.code, tt.message, tt.retryAfter)
			}
		})
	}
}
