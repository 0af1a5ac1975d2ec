package server

import (
	"bytes"
	"context"
	"errors"
	"io"

	"github.com/labstack/echo/v4"

	"github.com/credport/credport/contract"
)

// validation holds every request to openapi.yaml (contract.Validator) once the guard has routed
// and authenticated it, and bounds the request body bytes being read, parsed and handled at once.
type validation struct {
	contract *contract.Validator
	budget   *bodyBudget
}

func (v *validation) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		op, ok := c.Get(matchedOperationKey).(matchedOperation)
		if !ok {
			return errors.New("validate: request was not routed by the guard")
		}
		if err := v.contract.CheckRequest(req, op.route, op.params); err != nil {
			return err
		}
		if !contract.HasBody(op.route) {
			return next(c)
		}
		lease, err := v.budget.acquire(req)
		if err != nil {
			return err
		}
		// The parsed body lives until the handler returns, so the budget is held as long; a
		// batch charges the values of its items to it as it decodes them.
		defer lease.release()
		validated := &validatedBody{}
		req = req.WithContext(context.WithValue(withLease(req.Context(), lease), validatedBodyKey{}, validated))
		c.SetRequest(req)
		data, err := io.ReadAll(req.Body)
		if err != nil {
			var tooLarge *echo.HTTPError
			if errors.As(err, &tooLarge) {
				return err // the body limit's 413
			}
			// The client stopped sending (a short body, a reset): its request, not our database.
			return errUnreadableBody()
		}
		req.Body = io.NopCloser(bytes.NewReader(data))
		value, discriminator, err := v.contract.CheckBody(op.route, req.Header.Get(echo.HeaderContentType), data, lease.charge(req.Context()))
		if discriminator != "" {
			notes(req.Context()).credentialType = discriminator
		}
		if err != nil {
			return err
		}
		if value != nil {
			req.Body = contract.ValidatedBody(data, value)
			validated.value = value
		}
		return next(c)
	}
}

// validatedBody is the request body as the validator decoded it, which the handler reads
// values from instead of decoding what the generated binder made of them a second time.
type validatedBody struct {
	value any
}

type validatedBodyKey struct{}

// validatedCredentials are the credentials of the request's body as the validator decoded them:
// the object's members, numbers kept as sent; nil when the request carried none.
func validatedCredentials(ctx context.Context) map[string]any {
	v, _ := ctx.Value(validatedBodyKey{}).(*validatedBody)
	if v == nil {
		return nil
	}
	return credentialsOf(v.value)
}

// credentialsOf is the credentials object of a decoded import body, nil when it has none.
func credentialsOf(body any) map[string]any {
	obj, _ := body.(map[string]any)
	creds, _ := obj["credentials"].(map[string]any)
	return creds
}
