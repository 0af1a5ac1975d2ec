package server

import (
	"encoding/json"
	"fmt"
)

// appConnectionConfig is the connection_config of an APP connection: the request's, if it sent
// one, with app_id and installation_id set over it.
func appConnectionConfig(sent *json.RawMessage, appID, installationID string) (json.RawMessage, error) {
	config := map[string]json.RawMessage{}
	if sent != nil {
		if err := json.Unmarshal(*sent, &config); err != nil {
			return nil, fmt.Errorf("connection_config: %w", err)
		}
	}
	for k, v := range map[string]string{"app_id": appID, "installation_id": installationID} {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		config[k] = b
	}
	return json.Marshal(config)
}
