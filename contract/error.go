package contract

import "github.com/credport/credport/gen"

// Error is an error the API answers, in no transport's terms: its code (openapi.yaml's
// ErrorCode), a message for a person, and the field errors, with paths from the body (or query)
// root. The contract reports requests that break it as Errors; the server answers with them too.
// Which HTTP status a code answers is the server's to say.
type Error struct {
	Code    gen.ErrorCode
	Message string
	Details []gen.ErrorDetail
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

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

// NewError is an error with the given code, message and field errors.
func NewError(code gen.ErrorCode, message string, details ...gen.ErrorDetail) *Error {
	return &Error{Code: code, Message: message, Details: details}
}

// InvalidBody is the error of a body that is well-formed JSON but breaks a rule.
func InvalidBody(message string, details ...gen.ErrorDetail) *Error {
	return NewError(gen.ErrorCodeInvalidBody, message, details...)
}

// Detail is one field error; a nil path is the root's.
func Detail(code, message string, path []string) gen.ErrorDetail {
	if path == nil {
		path = []string{}
	}
	return gen.ErrorDetail{Code: code, Message: message, Path: path}
}
