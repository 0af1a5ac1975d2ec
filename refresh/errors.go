package refresh

// Kind sorts the refreshes that did not renew a token by what the caller can do about it.
type Kind int

const (
	// Refused: the provider turned the refresh down; the same credentials will not work.
	Refused Kind = iota + 1
	// Impossible: the credentials cannot be renewed (no token URL, no refresh token, a type
	// that has no grant).
	Impossible
	// BackingOff: a refusal was recent, and a refresh that is not forced waits for the backoff.
	BackingOff
	// Exhausted: refusals reached the limit; only a re-import makes the connection refreshable.
	Exhausted
	// Unavailable: the provider could not be reached; trying again later may work.
	Unavailable
)

// Error is a refresh that did not renew the token. Message says why, for the caller who asked,
// and carries no token; Err is the cause, for the log.
type Error struct {
	Kind    Kind
	Message string
	Err     error
	// LogID names the failed exchange with the provider, as the connection's auth error does.
	LogID string
}

func (e *Error) Error() string {
	if e.Err != nil {
		return "token refresh: " + e.Err.Error() + ": " + e.Message
	}
	return "token refresh: " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

func newError(kind Kind, message string) *Error { return &Error{Kind: kind, Message: message} }

// providerUnavailable is the error of a provider that could not be reached.
func providerUnavailable(cause error) *Error {
	return &Error{Kind: Unavailable, Err: cause,
		Message: "The provider could not be reached to refresh the access token. Please try again later."}
}
