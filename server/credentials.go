package server

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/credport/credport/gen"
)

// credentialPolicy says how imported credentials of one type are stored: OAUTH2, OAUTH1 and
// OAUTH2_CC keep the input and add it as "raw", NONE stores {}, the others are stored as sent
// (APP stores the minted token instead, elsewhere).
type credentialPolicy struct {
	// raw adds the input as sent under "raw".
	raw bool
	// empty stores {} whatever was sent.
	empty bool
}

var credentialPolicies = map[string]credentialPolicy{
	"OAUTH2":    {raw: true},
	"OAUTH1":    {raw: true},
	"OAUTH2_CC": {raw: true},
	"API_KEY":   {},
	"BASIC":     {},
	"TBA":       {},
	"NONE":      {empty: true},
}

// storedCredentials is what an import at time now stores for the given credentials, and when
// they must be renewed: nil for credentials that cannot be renewed or never expire. An OAUTH2
// token with a refresh token but no expiry is due at once, so that a first refresh tells its
// real expiry instead of leaving it to a guess.
func storedCredentials(creds gen.ImportCredentials, now time.Time) (json.RawMessage, *time.Time, error) {
	typ, err := creds.Discriminator()
	if err != nil {
		return nil, nil, fmt.Errorf("credentials type: %w", err)
	}
	policy, ok := credentialPolicies[typ]
	if !ok {
		return nil, nil, fmt.Errorf("no storage policy for credentials type %q", typ)
	}
	if policy.empty {
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
	if policy.raw {
		fields["raw"] = json.RawMessage(input)
	}
	stored, err := json.Marshal(fields)
	if err != nil {
		return nil, nil, fmt.Errorf("credentials: %w", err)
	}
	return stored, expiresAt, nil
}
