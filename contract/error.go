package contract

import "github.com/credport/credport/gen"

// The codes of the errors the contract reports. Which HTTP status each one answers is the
// server's to say.
const (
	CodeInvalidJSON        = "invalid_json"
	CodeInvalidBody        = "invalid_body"
	CodeInvalidQueryParams = "invalid_query_params"
	CodeInvalidURIParams   = "invalid_uri_params"
	CodeInvalidContentType = "invalid_content_type"
)

// Error is a request that breaks the contract: its code, a message for a person, and the field
// errors, with paths from the body (or query) root.
type Error struct {
	Code    string
	Message string
	Details []gen.ErrorDetail
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Object is the error as the API's error object, the one a StdError body carries.
func (e *Error) Object() *gen.ErrorObject {
	obj := gen.ErrorObject{Code: e.Code}
	if e.Message != "" {
		obj.Message = &e.Message
	}
	if len(e.Details) > 0 {
		obj.Errors = &e.Details
	}
	return &obj
}

func newError(code, message string, details ...gen.ErrorDetail) *Error {
	return &Error{Code: code, Message: message, Details: details}
}

// invalidBody is the error of a body that is well-formed JSON but breaks a rule.
func invalidBody(message string, details ...gen.ErrorDetail) *Error {
	return newError(CodeInvalidBody, message, details...)
}

// Detail is one field error; a nil path is the root's.
func Detail(code, message string, path []string) gen.ErrorDetail {
	if path == nil {
		path = []string{}
	}
	return gen.ErrorDetail{Code: code, Message: message, Path: path}
}
