package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/gen"
	"github.com/credport/credport/provider"
	"github.com/credport/credport/refresh"
	"github.com/credport/credport/store"
)

// Error is what a handler answers with when it does not succeed: a code of openapi.yaml's
// ErrorCode, a message and field errors, in no transport's terms. The table below gives its
// HTTP status; no other file in server/ chooses one.
type Error = contract.Error

// statusOf is the HTTP status of each code. Every ErrorCode of openapi.yaml has one
// (TestErrorCodeStatuses).
var statusOf = map[gen.ErrorCode]int{
	gen.ErrorCodeInvalidJson:           http.StatusBadRequest,
	gen.ErrorCodeInvalidBody:           http.StatusBadRequest,
	gen.ErrorCodeInvalidQueryParams:    http.StatusBadRequest,
	gen.ErrorCodeInvalidUriParams:      http.StatusBadRequest,
	gen.ErrorCodeInvalidContentType:    http.StatusUnsupportedMediaType,
	gen.ErrorCodeMissingAuthHeader:     http.StatusUnauthorized,
	gen.ErrorCodeMalformedAuthHeader:   http.StatusUnauthorized,
	gen.ErrorCodeUnknownAccount:        http.StatusUnauthorized,
	gen.ErrorCodeForbidden:             http.StatusForbidden,
	gen.ErrorCodeNotFound:              http.StatusNotFound,
	gen.ErrorCodeUnknownProviderConfig: http.StatusBadRequest,
	gen.ErrorCodeMethodNotAllowed:      http.StatusMethodNotAllowed,
	gen.ErrorCodePayloadTooLarge:       http.StatusRequestEntityTooLarge,
	gen.ErrorCodeTooManyRequests:       http.StatusTooManyRequests,
	gen.ErrorCodeProviderUnavailable:   http.StatusBadGateway,
	gen.ErrorCodeServerOverloaded:      http.StatusServiceUnavailable,
	gen.ErrorCodeServiceUnavailable:    http.StatusServiceUnavailable,
	gen.ErrorCodeDatabaseUnavailable:   http.StatusServiceUnavailable,
	gen.ErrorCodeServerError:           http.StatusInternalServerError,

	// The two codes the reference answers with two statuses. The second status is set only by
	// the named constructors below (errUnknownConnectionToDelete, errRefreshRefused).
	//
	// unknown_connection: 404 from the metadata endpoints; DELETE /connection/{connectionId}
	// answers 400 for a connection (or integration) that does not exist.
	gen.ErrorCodeUnknownConnection: http.StatusNotFound,
	// invalid_credentials: 400 when the provider refused the refresh, or the connection cannot be
	// refreshed (no refresh token, no token URL); 424 (Failed Dependency) while refusals are
	// backed off from, or after too many of them: the credentials were fine to ask with, but the
	// connection cannot be refreshed now.
	gen.ErrorCodeInvalidCredentials: http.StatusBadRequest,
}

// sentinels answer the errors of other packages by identity (errors.Is), first match first: a
// handler that has nothing more precise to say returns them as they come.
var sentinels = []struct {
	err    error
	answer func() error
}{
	// A write that names an integration deleted after this replica cached it.
	{store.ErrParentNotFound, func() error { return apiError(gen.ErrorCodeNotFound, "Integration does not exist") }},
	{store.ErrNotFound, func() error { return apiError(gen.ErrorCodeNotFound, "Not found") }},
	{store.ErrUnavailable, func() error { return errDatabaseUnavailable(msgDatabaseUnavailable) }},
	{context.DeadlineExceeded, func() error { return errDatabaseUnavailable(msgDatabaseUnavailable) }},
}

// databaseRetryAfter is the Retry-After of a database that could not answer, in seconds: a
// failover of the PostgreSQL primary takes a few.
const databaseRetryAfter = 2

const (
	msgDatabaseUnavailable = "The database is unavailable, retry later"
	msgUnexpected          = "An unexpected error occurred"
)

// answered is an Error with what its code alone does not say: the second status of a code the
// reference answers with two, or a Retry-After. Only the constructors in this file make one.
type answered struct {
	err        *Error
	status     int // 0: the table's
	retryAfter int // seconds; 0: no Retry-After
}

func (e *answered) Error() string { return e.err.Error() }
func (e *answered) Unwrap() error { return e.err }

// apiError is an Error with the given code: the table gives its status.
func apiError(code gen.ErrorCode, message string, details ...gen.ErrorDetail) *Error {
	return contract.NewError(code, message, details...)
}

// invalidBody is the error of a body that is well-formed JSON but breaks a rule.
func invalidBody(message string, details ...gen.ErrorDetail) *Error {
	return contract.InvalidBody(message, details...)
}

// errUnreadableBody is the error of a body the client stopped sending, or that could not be bound.
func errUnreadableBody() *Error {
	return invalidBody("Request body could not be read")
}

// detail is one field error of an answer.
func detail(code, message string, path []string) gen.ErrorDetail {
	return contract.Detail(code, message, path)
}

// errUnknownProviderConfig answers a read or update of a connection whose integration does not exist.
func errUnknownProviderConfig() *Error {
	return apiError(gen.ErrorCodeUnknownProviderConfig, "Provider does not exists")
}

// errConnectionNotFound answers a read or update of a connection that does not exist.
func errConnectionNotFound() *Error {
	return apiError(gen.ErrorCodeNotFound, "Failed to find connection")
}

// errServiceUnavailable answers a server that cannot serve for a reason of its own, such as
// encryption keys it lacks.
func errServiceUnavailable(message string) *Error {
	return apiError(gen.ErrorCodeServiceUnavailable, message)
}

// errDatabaseUnavailable is the 503 of a request the database could not serve within its
// deadline: it is unreachable, too slow, or failing over to a new primary. Nothing was done, and
// the same request may be sent again after Retry-After.
func errDatabaseUnavailable(message string) error {
	return &answered{err: apiError(gen.ErrorCodeDatabaseUnavailable, message), retryAfter: databaseRetryAfter}
}

// errUnknownConnectionToDelete is the 400 of DELETE /connection/{connectionId} for a connection
// or integration that does not exist, where the metadata endpoints answer the same code with 404.
func errUnknownConnectionToDelete() error {
	return &answered{err: &Error{Code: gen.ErrorCodeUnknownConnection}, status: http.StatusBadRequest}
}

// errRefreshRefused is the 424 of invalid_credentials: recent refusals of the provider are being
// backed off from, or there were too many of them.
func errRefreshRefused(message string) error {
	return &answered{err: apiError(gen.ErrorCodeInvalidCredentials, message), status: http.StatusFailedDependency}
}

// errOverloaded is the 503 of a server that is busy with as many request bodies as it may hold
// at once: the request was not handled, and may be sent again shortly.
func errOverloaded() error {
	return &answered{err: apiError(gen.ErrorCodeServerOverloaded, "The server is busy with other requests, retry later"), retryAfter: 1}
}

// errRateLimited is the 429 of a key that has used up its rate, with when to try again.
func errRateLimited(retryAfter int) error {
	return &answered{err: apiError(gen.ErrorCodeTooManyRequests, "Rate limit exceeded for this API key"), retryAfter: retryAfter}
}

// errNoRoute answers a path the contract does not declare.
func errNoRoute() *Error { return apiError(gen.ErrorCodeNotFound, "No such route") }

// errMethodNotAllowed answers a method the contract does not declare on a path it does.
func errMethodNotAllowed() *Error {
	return apiError(gen.ErrorCodeMethodNotAllowed, "Method not allowed on this route")
}

// answer is how an error is answered: its status, error object and Retry-After.
type answer struct {
	Status     int
	Code       gen.ErrorCode
	Message    string
	Details    []gen.ErrorDetail
	RetryAfter int
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
func errorObject(apiErr *answer) gen.ErrorObject {
	obj := gen.ErrorObject{Code: apiErr.Code}
	if apiErr.Message != "" {
		obj.Message = &apiErr.Message
	}
	if len(apiErr.Details) > 0 {
		obj.Errors = &apiErr.Details
	}
	return obj
}

// toAPIError is the answer to err: by the status table for an Error, by the sentinels table for
// another package's error, and a generic 500 for anything else.
func toAPIError(err error) *answer {
	var ans *answered
	if errors.As(err, &ans) {
		a := answerOf(ans.err)
		if ans.status != 0 {
			a.Status = ans.status
		}
		a.RetryAfter = ans.retryAfter
		return a
	}
	var apiErr *Error
	if errors.As(err, &apiErr) {
		return answerOf(apiErr)
	}
	if e := providerError(err); e != nil {
		return toAPIError(e)
	}
	var httpErr *echo.HTTPError
	if errors.As(err, &httpErr) {
		switch httpErr.Code {
		case http.StatusNotFound:
			return answerOf(errNoRoute())
		case http.StatusMethodNotAllowed:
			return answerOf(errMethodNotAllowed())
		case http.StatusBadRequest:
			// Binding a body that passed validation should not fail; if it does, the body is still
			// the client's to fix.
			return answerOf(errUnreadableBody())
		case http.StatusRequestEntityTooLarge:
			return answerOf(apiError(gen.ErrorCodePayloadTooLarge, "Request body is too large"))
		}
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return toAPIError(s.answer())
		}
	}
	return answerOf(apiError(gen.ErrorCodeServerError, msgUnexpected))
}

// answerOf is e answered with its code's status. TestErrorCodeStatuses keeps every code of the
// spec in the table; a code that is not one of them is answered as what it is, a server error.
func answerOf(e *Error) *answer {
	status, ok := statusOf[e.Code]
	if !ok {
		return &answer{Status: http.StatusInternalServerError, Code: gen.ErrorCodeServerError, Message: msgUnexpected}
	}
	return &answer{Status: status, Code: e.Code, Message: e.Message, Details: e.Details}
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
func providerError(err error) error {
	var refreshErr *refresh.Error
	if errors.As(err, &refreshErr) {
		switch refreshErr.Kind {
		case refresh.Unavailable:
			return apiError(gen.ErrorCodeProviderUnavailable, refreshErr.Message)
		case refresh.BackingOff, refresh.Exhausted:
			return errRefreshRefused(refreshErr.Message)
		}
		return apiError(gen.ErrorCodeInvalidCredentials, refreshErr.Message)
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
		return apiError(gen.ErrorCodeProviderUnavailable, unavailable.Reason)
	}
	return nil
}
