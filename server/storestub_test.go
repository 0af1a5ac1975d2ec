package server_test

import (
	"context"
	"crypto/rsa"
	"errors"
	"time"

	"github.com/credport/credport/store"
)

// noProviderCalls is the part of a test Store that GitHub App imports and token refresh use,
// for stores of tests that make neither: every call fails.
type noProviderCalls struct{}

var errNoProviderCalls = errors.New("this test store makes no provider calls")

func (noProviderCalls) AppPrivateKey(context.Context, store.Integration) (*rsa.PrivateKey, error) {
	return nil, errNoProviderCalls
}

func (noProviderCalls) ClaimRefresh(context.Context, store.ReadConnection, time.Duration) (store.RefreshClaim, error) {
	return store.RefreshClaim{}, errNoProviderCalls
}

func (noProviderCalls) RecordRefresh(context.Context, store.RefreshClaim, store.RefreshResult) error {
	return errNoProviderCalls
}

func (noProviderCalls) DueRefreshes(context.Context, time.Time, time.Time, int, int) ([]store.DueRefresh, error) {
	return nil, errNoProviderCalls
}

func (noProviderCalls) IntegrationClientSecret(context.Context, store.Integration) (string, error) {
	return "", errNoProviderCalls
}
