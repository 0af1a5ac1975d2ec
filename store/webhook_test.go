package store_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// TestWebhookOutbox: imports and a recorded refusal queue their events in the outbox, once per
// destination, as the settings, switches and overrides say; a claimed row is not claimed twice.
func TestWebhookOutbox(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		f := newRefreshFixture(t, b)
		env := f.oauth.EnvironmentID
		f.upsert(f.oauth, "before-settings", nil)
		primary, secondary := "https://a.example/hook", "https://b.example/hook"
		_, key, err := f.db.SetWebhookSettings(f.ctx, env, store.WebhookSettingsChange{PrimaryURL: &primary, SecondaryURL: &secondary})
		if err != nil || len(key) != 64 {
			t.Fatalf("set: key %d chars, %v", len(key), err)
		}
		if got, err := f.db.WebhookKey(f.ctx, env); err != nil || string(got) != key {
			t.Fatalf("key opened %q, %v", got, err)
		}
		f.upsert(f.oauth, "c", at(f.now.Add(-time.Minute))) // creation, to both
		f.now = f.now.Add(time.Second)
		f.upsert(f.oauth, "c", at(f.now.Add(-time.Minute))) // override, to both
		if _, err := f.db.UpsertConnection(f.ctx, store.UpsertConnection{EnvironmentID: env, Integration: f.oauth,
			ConnectionID: "quiet", Credentials: json.RawMessage(`{"type":"OAUTH2","access_token":"t"}`), NoWebhooks: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.db.UpsertConnection(f.ctx, store.UpsertConnection{EnvironmentID: env, Integration: f.oauth,
			ConnectionID: "elsewhere", Credentials: json.RawMessage(`{"type":"OAUTH2","access_token":"t"}`),
			WebhookURLOverride: "https://c.example/hook"}); err != nil {
			t.Fatal(err)
		}
		off := false
		if _, _, err := f.db.SetWebhookSettings(f.ctx, env, store.WebhookSettingsChange{OnAuthCreation: &off}); err != nil {
			t.Fatal(err)
		}
		f.upsert(f.oauth, "no-creation", nil)
		f.record("c", store.RefreshResult{Outcome: store.RefreshRefused, Error: "refused", LogID: "l",
			ProviderError: "invalid_grant", ProviderDescription: "expired"})
		f.record("c", store.RefreshResult{Outcome: store.RefreshUnavailable})

		list, err := f.db.ListWebhookDeliveries(f.ctx, env, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		type row struct{ op, conn, url string }
		var got []row
		for i := len(list) - 1; i >= 0; i-- {
			got = append(got, row{list[i].Operation, list[i].ConnectionID, list[i].URL})
		}
		want := []row{
			{"creation", "c", primary}, {"creation", "c", secondary},
			{"override", "c", primary}, {"override", "c", secondary},
			{"creation", "elsewhere", "https://c.example/hook"},
			{"refresh", "c", primary}, {"refresh", "c", secondary},
		}
		if len(got) != len(want) {
			t.Fatalf("outbox %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("outbox %v, want %v", got, want)
			}
		}
		var ev store.AuthEvent
		if err := json.Unmarshal(list[0].Body, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Operation != "refresh" || ev.Success || ev.Error == nil || ev.Error.Type != "invalid_grant" ||
			ev.Error.Description != "invalid_grant: expired" || ev.Environment != "dev" || ev.Provider != "fake" {
			t.Fatalf("refresh event %s", list[0].Body)
		}
		if list[0].DeliveryID != list[1].DeliveryID || list[1].DeliveryID == list[2].DeliveryID {
			t.Fatal("one delivery id per event, shared by its destinations")
		}

		claimed, err := f.db.ClaimWebhooks(f.ctx, time.Minute, 100)
		if err != nil || len(claimed) != len(want) {
			t.Fatalf("claimed %d, %v", len(claimed), err)
		}
		if again, err := f.db.ClaimWebhooks(f.ctx, time.Minute, 100); err != nil || len(again) != 0 {
			t.Fatalf("claimed again %d, %v", len(again), err)
		}
		if err := f.db.RecordWebhookAttempt(f.ctx, claimed[0], store.WebhookAttempt{Status: 200, Outcome: store.WebhookDelivered}); err != nil {
			t.Fatal(err)
		}
		if n, oldest, err := f.db.WebhookBacklog(f.ctx); err != nil || n != int64(len(want)-1) || oldest == nil {
			t.Fatalf("backlog %d %v %v", n, oldest, err)
		}
		f.now = f.now.Add(2 * time.Minute) // the leases end
		if again, err := f.db.ClaimWebhooks(f.ctx, time.Minute, 100); err != nil || len(again) != len(want)-1 {
			t.Fatalf("claimed after the lease %d, %v", len(again), err)
		}
		if err := f.db.RedeliverWebhook(f.ctx, env, claimed[0].DeliveryID); err != nil {
			t.Fatal(err)
		}
		if err := f.db.RedeliverWebhook(f.ctx, env, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("redeliver unknown: %v", err)
		}
		f.now = f.now.Add(8 * 24 * time.Hour)
		if _, err := f.db.PruneWebhooks(f.ctx, f.now.Add(-7*24*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, err := f.db.RotateWebhookKey(f.ctx, env); err != nil {
			t.Fatal(err)
		}
	})
}
