package server

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/credport/credport/contract"
	"github.com/credport/credport/gen"
)

// storedCredentials is what an import at time now stores for the given credentials, as policies
// say for their type, and when they must be renewed: nil for credentials that cannot be renewed
// or never expire. An OAUTH2
// token with a refresh token but no expiry is due at once, so that a first refresh tells its
// real expiry instead of leaving it to a guess.
func storedCredentials(creds gen.ImportCredentials, policies map[string]contract.CredentialPolicy, now time.Time) (json.RawMessage, *time.Time, error) {
	typ, err := creds.Discriminator()
	if err != nil {
		return nil, nil, fmt.Errorf("credentials type: %w", err)
	}
	policy, ok := policies[typ]
	if !ok {
		return nil, nil, fmt.Errorf("no storage policy for credentials type %q", typ)
	}
	if policy.Empty {
		return json.RawMessage(`{}`), nil, nil
	}
	input, err := creds.MarshalJSON()
	if err != nil {
		return nil, nil, fmt.Errorf("credentials: %w", err)
	}
	var fields map[string]any
	if err := json.Unmarshal(input, &fields); err != nil {
		return nil, nil, fmt.Errorf("credentials: %w", err)
	}
	var expiresAt *time.Time
	if s, ok := fields["expires_at"].(string); ok {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, nil, fmt.Errorf("credentials expires_at: %w", err)
		}
		t = t.UTC()
		expiresAt = &t
		fields["expires_at"] = t.Format(time.RFC3339Nano)
	}
	if typ == "OAUTH2" {
		if refresh, _ := fields["refresh_token"].(string); refresh == "" {
			expiresAt = nil
		} else if expiresAt == nil {
			expiresAt = &now
		}
	}
	if policy.Raw {
		fields["raw"] = json.RawMessage(input)
	}
	stored, err := json.Marshal(fields)
	if err != nil {
		return nil, nil, fmt.Errorf("credentials: %w", err)
	}
	return stored, expiresAt, nil
}
