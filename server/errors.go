package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/labstack/echo/v4"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/gen"
	"github.com/credport/credport/provider"
	"github.com/credport/credport/refresh"
	"github.com/credport/credport/store"
)

// Error is an error the API answers with its own status and code (the errors table of docs/api.md).
type Error struct {
	Status  int
	Code    string
	Message string
	Details []gen.ErrorDetail
	// RetryAfter, in seconds, is sent as Retry-After when set.
	RetryAfter int
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func newError(status int, code, message string, details ...gen.ErrorDetail) *Error {
	return &Error{Status: status, Code: code, Message: message, Details: details}
}

// invalidBody is the 400 for a body that is well-formed JSON but breaks a rule.
func invalidBody(message string, details ...gen.ErrorDetail) *Error {
	return newError(http.StatusBadRequest, contract.CodeInvalidBody, message, details...)
}

// errUnreadableBody is the 400 of a body the client stopped sending, or that could not be bound.
func errUnreadableBody() *Error {
	return newError(http.StatusBadRequest, contract.CodeInvalidBody, "Request body could not be read")
}

// detail is one field error of an answer.
func detail(code, message string, path []string) gen.ErrorDetail {
	return contract.Detail(code, message, path)
}

// contractStatus is the status of a request that breaks openapi.yaml, by the code the contract
// reports.
func contractStatus(code string) int {
	if code == contract.CodeInvalidContentType {
		return http.StatusUnsupportedMediaType
	}
	return http.StatusBadRequest // invalid_json, invalid_body, invalid_query_params, invalid_uri_params
}

// errOverloaded is the 503 of a server that is busy with as many request bodies as it may hold
// at once: the request was not handled, and may be sent again shortly.
func errOverloaded() *Error {
	e := newError(http.StatusServiceUnavailable, "server_overloaded", "The server is busy with other requests, retry later")
	e.RetryAfter = 1
	return e
}

// HTTPErrorHandler is the one place that turns errors into responses. Client errors keep their
// message; anything unexpected becomes a generic 500 whose cause is logged with the request id.
func HTTPErrorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		apiErr := toAPIError(err)
		ctx := c.Request().Context()
		reqID := c.Response().Header().Get(echo.HeaderXRequestID)
		if apiErr.Status >= 500 {
			log.ErrorContext(ctx, "request failed", "request_id", reqID, "method", c.Request().Method,
				"path", c.Path(), "status", apiErr.Status, "code", apiErr.Code, "error", err)
		}
		body := gen.StdError{Error: errorObject(apiErr)}
		if bodyUnread(c) {
			// Refused before its body was read (401, 403, 429, 413, 503...): close the connection
			// rather than let net/http drain what is left of the body, up to 256 KiB at whatever
			// pace the client sends it. The past read deadline makes that drain stop at once.
			c.Response().Header().Set(echo.HeaderConnection, "close")
			_ = http.NewResponseController(c.Response()).SetReadDeadline(time.Now())
		}
		if apiErr.RetryAfter > 0 {
			c.Response().Header().Set("Retry-After", strconv.Itoa(apiErr.RetryAfter))
		}
		if c.Request().Method == http.MethodHead {
			err = c.NoContent(apiErr.Status)
		} else {
			err = c.JSON(apiErr.Status, body)
		}
		if err != nil {
			log.ErrorContext(ctx, "write error response", "request_id", reqID, "error", err)
		}
	}
}

// errorObject is the error member of an answer: of a StdError body, or of a result of
// POST /connections/batch.
func errorObject(apiErr *Error) gen.ErrorObject {
	obj := gen.ErrorObject{Code: apiErr.Code}
	if apiErr.Message != "" {
		obj.Message = &apiErr.Message
	}
	if len(apiErr.Details) > 0 {
		obj.Errors = &apiErr.Details
	}
	return obj
}

func toAPIError(err error) *Error {
	var apiErr *Error
	if errors.As(err, &apiErr) {
		return apiErr
	}
	var contractErr *contract.Error
	if errors.As(err, &contractErr) {
		return newError(contractStatus(contractErr.Code), contractErr.Code, contractErr.Message, contractErr.Details...)
	}
	if e := providerError(err); e != nil {
		return e
	}
	var httpErr *echo.HTTPError
	if errors.As(err, &httpErr) {
		switch httpErr.Code {
		case http.StatusNotFound:
			return newError(http.StatusNotFound, "not_found", "No such route")
		case http.StatusMethodNotAllowed:
			return newError(http.StatusMethodNotAllowed, "method_not_allowed", "Method not allowed on this route")
		case http.StatusBadRequest:
			// Binding a body that passed validation should not fail; if it does, the body is still
			// the client's to fix.
			return errUnreadableBody()
		case http.StatusRequestEntityTooLarge:
			return newError(http.StatusRequestEntityTooLarge, "payload_too_large", "Request body is too large")
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		return newError(http.StatusNotFound, "not_found", "Not found")
	}
	if store.IsForeignKeyViolation(err) {
		// A write that names an integration deleted after this replica cached it.
		return newError(http.StatusNotFound, "not_found", "Integration does not exist")
	}
	if isUnavailable(err) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, store.ErrUnavailable) || store.IsBusy(err) {
		return newError(http.StatusServiceUnavailable, "service_unavailable", "The database is unavailable, retry later")
	}
	return newError(http.StatusInternalServerError, "server_error", "An unexpected error occurred")
}

// isUnavailable tells whether err means the database could not be reached. A connection that the
// database side closes mid-query surfaces from pgx as io.ErrUnexpectedEOF.
func isUnavailable(err error) bool {
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) || errors.Is(err, io.ErrUnexpectedEOF)
}

// refreshStatuses are the statuses of the refreshes that did not renew a token, all of them
// invalid_credentials but an unreachable provider. 424: the credentials were fine to ask with,
// but the connection cannot be refreshed now (backing off) or any more (exhausted).
var refreshStatuses = map[refresh.Kind]int{
	refresh.Refused:    http.StatusBadRequest,
	refresh.Impossible: http.StatusBadRequest,
	refresh.BackingOff: http.StatusFailedDependency,
	refresh.Exhausted:  http.StatusFailedDependency,
}

// appRefusals are the error details of GitHub's refusals to mint an installation token, by
// provider.RefusedError's Code: what was refused and which field of the import names it.
var appRefusals = map[string]gen.ErrorDetail{
	provider.RefusalAppKeyRejected: {Code: provider.RefusalAppKeyRejected,
		Message: "GitHub does not accept the integration's private key for this app", Path: []string{"credentials", "app_id"}},
	provider.RefusalInstallationNotFound: {Code: provider.RefusalInstallationNotFound,
		Message: "No such installation of the integration's GitHub App", Path: []string{"credentials", "installation_id"}},
	provider.RefusalInstallationRefused: {Code: provider.RefusalInstallationRefused,
		Message: "GitHub refused to mint a token for this installation", Path: []string{"credentials", "installation_id"}},
}

// providerError is the answer to an error of a call to a provider, made to renew a token or to
// mint a GitHub App's; nil for any other error. A refused import is the client's body to fix:
// 400 invalid_body. A provider that could not answer is 502 provider_unavailable.
func providerError(err error) *Error {
	var refreshErr *refresh.Error
	if errors.As(err, &refreshErr) {
		if refreshErr.Kind == refresh.Unavailable {
			return newError(http.StatusBadGateway, "provider_unavailable", refreshErr.Message)
		}
		return newError(refreshStatuses[refreshErr.Kind], "invalid_credentials", refreshErr.Message)
	}
	var refused *provider.RefusedError
	if errors.As(err, &refused) {
		if d, ok := appRefusals[refused.Code]; ok {
			return invalidBody(refused.Description, d)
		}
		return invalidBody(refused.Description)
	}
	var unavailable *provider.UnavailableError
	if errors.As(err, &unavailable) {
		return newError(http.StatusBadGateway, "provider_unavailable", unavailable.Reason)
	}
	return nil
}
