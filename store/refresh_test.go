package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// refreshFixture is a store with a clock, an integration "oauth" that has a token URL and one
// "plain" that has none.
type refreshFixture struct {
	t      *testing.T
	db     *store.DB
	now    time.Time
	oauth  store.Integration
	plain  store.Integration
	ctx    context.Context
	nextID int
}

func newRefreshFixture(t *testing.T, b storetest.Backend) *refreshFixture {
	t.Helper()
	f := newRefreshFixtureOn(t, storetest.Open(t, b))
	var err error
	f.plain, err = f.db.CreateIntegration(f.ctx, store.NewIntegration{
		Environment: "dev", UniqueKey: "plain", Provider: "fake", AuthMode: "OAUTH2",
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// upsert imports connection id of in with credentials expiring at exp (nil: never) and returns
// the credentials it stored.
func (f *refreshFixture) upsert(in store.Integration, id string, exp *time.Time) json.RawMessage {
	f.t.Helper()
	f.nextID++
	creds := json.RawMessage(fmt.Sprintf(`{"type":"OAUTH2","access_token":"token-%d","refresh_token":"refresh-%d"}`, f.nextID, f.nextID))
	_, err := f.db.UpsertConnection(f.ctx, store.UpsertConnection{
		EnvironmentID: in.EnvironmentID, Integration: in, ConnectionID: id,
		Credentials: creds, CredentialsExpiresAt: exp,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return creds
}

func (f *refreshFixture) target(id string) store.ReadConnection {
	return store.ReadConnection{EnvironmentID: f.oauth.EnvironmentID, Integration: f.oauth, ConnectionID: id}
}

// lease is how long the fixture's claims hold a connection.
const lease = time.Minute

// claim claims connection id for a refresh.
func (f *refreshFixture) claim(id string) store.RefreshClaim {
	f.t.Helper()
	c, err := f.db.ClaimRefresh(f.ctx, f.target(id), lease)
	if err != nil {
		f.t.Fatalf("claim %s: %v", id, err)
	}
	return c
}

// record runs a refresh of connection id that decides res, and returns the state it saw.
func (f *refreshFixture) record(id string, res store.RefreshResult) store.RefreshState {
	f.t.Helper()
	c := f.claim(id)
	if err := f.db.RecordRefresh(f.ctx, c, res); err != nil {
		f.t.Fatalf("record refresh of %s: %v", id, err)
	}
	return c.State
}

// state is connection id as a refresh sees it.
func (f *refreshFixture) state(id string) store.RefreshState {
	f.t.Helper()
	return f.record(id, store.RefreshResult{})
}

// history is connection id's refresh history as a read sees it.
func (f *refreshFixture) history(id string) store.RefreshHistory {
	f.t.Helper()
	c, err := f.db.GetConnection(f.ctx, f.target(id))
	if err != nil {
		f.t.Fatal(err)
	}
	return c.Refresh
}

func refused(logID string) store.RefreshResult {
	return store.RefreshResult{Outcome: store.RefreshRefused, Error: "invalid_grant: revoked", LogID: logID}
}

func at(t time.Time) *time.Time { return &t }

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

func TestDueRefreshes(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		f := newRefreshFixture(t, b)
		t0 := f.now
		f.upsert(f.oauth, "expired", at(t0.Add(-time.Hour)))
		f.upsert(f.oauth, "soon", at(t0.Add(5*time.Minute)))
		f.upsert(f.oauth, "later", at(t0.Add(time.Hour)))
		f.upsert(f.oauth, "never", nil)
		f.upsert(f.plain, "no-token-url", at(t0.Add(-2*time.Hour)))
		f.upsert(f.oauth, "refused-recently", at(t0.Add(-30*time.Minute)))
		f.upsert(f.oauth, "refused-long-ago", at(t0.Add(-20*time.Minute)))
		f.upsert(f.oauth, "exhausted", at(t0.Add(-10*time.Minute)))
		f.now = t0.Add(-time.Hour)
		f.record("refused-long-ago", refused("log-1"))
		for range 5 {
			f.record("exhausted", refused("log-2"))
		}
		f.now = t0
		f.record("refused-recently", refused("log-3"))

		tests := []struct {
			name         string
			before       time.Time
			failedBefore time.Time
			maxFailures  int
			limit        int
			want         []string
		}{
			{name: "within the window, soonest first", before: t0.Add(15 * time.Minute), failedBefore: t0.Add(-30 * time.Second), maxFailures: 5, limit: 100,
				want: []string{"expired", "refused-long-ago", "soon"}},
			{name: "a wider window", before: t0.Add(2 * time.Hour), failedBefore: t0.Add(-30 * time.Second), maxFailures: 5, limit: 100,
				want: []string{"expired", "refused-long-ago", "soon", "later"}},
			{name: "a narrower window", before: t0.Add(-15 * time.Minute), failedBefore: t0.Add(-30 * time.Second), maxFailures: 5, limit: 100,
				want: []string{"expired", "refused-long-ago"}},
			{name: "more failures allowed", before: t0.Add(15 * time.Minute), failedBefore: t0.Add(-30 * time.Second), maxFailures: 6, limit: 100,
				want: []string{"expired", "refused-long-ago", "exhausted", "soon"}},
			{name: "backoff over", before: t0.Add(15 * time.Minute), failedBefore: t0.Add(time.Second), maxFailures: 5, limit: 100,
				want: []string{"expired", "refused-recently", "refused-long-ago", "soon"}},
			{name: "longer backoff", before: t0.Add(15 * time.Minute), failedBefore: t0.Add(-2 * time.Hour), maxFailures: 5, limit: 100,
				want: []string{"expired", "soon"}},
			{name: "limit", before: t0.Add(15 * time.Minute), failedBefore: t0.Add(-30 * time.Second), maxFailures: 5, limit: 2,
				want: []string{"expired", "refused-long-ago"}},
			{name: "nothing due", before: t0.Add(-3 * time.Hour), failedBefore: t0, maxFailures: 5, limit: 100},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				due, err := f.db.DueRefreshes(f.ctx, tt.before, tt.failedBefore, tt.maxFailures, tt.limit)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, d := range due {
					if d.EnvironmentID != f.oauth.EnvironmentID || d.ProviderConfigKey != "oauth" {
						t.Errorf("due %+v, want only connections of oauth", d)
					}
					got = append(got, d.ConnectionID)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("due %q, want %q", got, tt.want)
				}
			})
		}
	})
}

func TestRefreshConnectionRecords(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		f := newRefreshFixture(t, b)
		t0 := f.now
		exp := at(t0.Add(-time.Minute))

		t.Run("state", func(t *testing.T) {
			creds := f.upsert(f.oauth, "state", exp)
			st := f.state("state")
			if string(st.Credentials) != string(creds) || !sameTime(st.ExpiresAt, exp) || st.Failures != 0 || st.FailedAt != nil || st.UnavailableAt != nil {
				t.Errorf("state %+v, want the imported credentials and expiry, no history", st)
			}
		})
		t.Run("skipped records nothing", func(t *testing.T) {
			creds := f.upsert(f.oauth, "skipped", exp)
			f.record("skipped", store.RefreshResult{Outcome: store.RefreshSkipped, Credentials: json.RawMessage(`{"type":"OAUTH2","access_token":"x"}`)})
			if st := f.state("skipped"); string(st.Credentials) != string(creds) || !sameTime(st.ExpiresAt, exp) {
				t.Errorf("state %+v, want it untouched", st)
			}
		})
		t.Run("refused counts a failure", func(t *testing.T) {
			creds := f.upsert(f.oauth, "refused", exp)
			f.now = t0.Add(time.Minute)
			f.record("refused", refused("log-a"))
			f.now = t0.Add(2 * time.Minute)
			f.record("refused", refused("log-b"))
			h := f.history("refused")
			if h.Failures != 2 || !sameTime(h.FailedAt, at(t0.Add(2*time.Minute))) || h.Error != "invalid_grant: revoked" || h.LogID != "log-b" {
				t.Errorf("history %+v, want 2 failures, the latest at %v with its log id", h, t0.Add(2*time.Minute))
			}
			if st := f.state("refused"); string(st.Credentials) != string(creds) || !sameTime(st.ExpiresAt, exp) {
				t.Errorf("state %+v, want the credentials untouched", st)
			}
		})
		t.Run("unavailable counts no failure", func(t *testing.T) {
			creds := f.upsert(f.oauth, "unavailable", exp)
			f.now = t0.Add(3 * time.Minute)
			f.record("unavailable", store.RefreshResult{Outcome: store.RefreshUnavailable})
			st := f.state("unavailable")
			if st.Failures != 0 || st.FailedAt != nil || !sameTime(st.UnavailableAt, at(t0.Add(3*time.Minute))) || string(st.Credentials) != string(creds) {
				t.Errorf("state %+v, want unavailable at %v and nothing else", st, t0.Add(3*time.Minute))
			}
		})
		t.Run("renewed replaces the credentials and clears the history", func(t *testing.T) {
			f.upsert(f.oauth, "renewed", exp)
			f.record("renewed", refused("log-c"))
			f.record("renewed", store.RefreshResult{Outcome: store.RefreshUnavailable})
			f.now = t0.Add(4 * time.Minute)
			newExp := at(t0.Add(time.Hour))
			renewed := json.RawMessage(`{"type":"OAUTH2","access_token":"renewed","refresh_token":"r2"}`)
			f.record("renewed", store.RefreshResult{Outcome: store.RefreshRenewed, Credentials: renewed, ExpiresAt: newExp})
			st := f.state("renewed")
			if string(st.Credentials) != string(renewed) || !sameTime(st.ExpiresAt, newExp) || st.Failures != 0 || st.FailedAt != nil || st.UnavailableAt != nil {
				t.Errorf("state %+v, want the renewed credentials and no history", st)
			}
			c, err := f.db.GetConnection(f.ctx, store.ReadConnection{EnvironmentID: f.oauth.EnvironmentID, Integration: f.oauth, ConnectionID: "renewed", WithCredentials: true})
			if err != nil {
				t.Fatal(err)
			}
			if string(c.Credentials) != string(renewed) || c.Refresh.Error != "" || c.Refresh.LogID != "" || !c.UpdatedAt.Equal(t0.Add(4*time.Minute)) {
				t.Errorf("read %s %+v updated %v, want the renewed credentials, no error, updated now", c.Credentials, c.Refresh, c.UpdatedAt)
			}
		})
		t.Run("impossible is no longer due", func(t *testing.T) {
			f.upsert(f.oauth, "impossible", exp)
			f.record("impossible", store.RefreshResult{Outcome: store.RefreshImpossible})
			if st := f.state("impossible"); st.ExpiresAt != nil || st.Failures != 0 {
				t.Errorf("state %+v, want no expiry and no failure", st)
			}
		})
		t.Run("unknown connection", func(t *testing.T) {
			_, err := f.db.ClaimRefresh(f.ctx, f.target("nope"), lease)
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("err %v, want ErrNotFound", err)
			}
		})
	})
}

// TestRefreshConnectionReimportWins: a re-import while the provider is being called is not
// overwritten by the refresh's result, whatever it is.
func TestRefreshConnectionReimportWins(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		f := newRefreshFixture(t, b)
		for _, tt := range []struct {
			name string
			res  store.RefreshResult
		}{
			{"renewed", store.RefreshResult{Outcome: store.RefreshRenewed, Credentials: json.RawMessage(`{"type":"OAUTH2","access_token":"stale"}`), ExpiresAt: at(f.now.Add(time.Hour))}},
			{"refused", refused("log-d")},
			{"unavailable", store.RefreshResult{Outcome: store.RefreshUnavailable}},
			{"impossible", store.RefreshResult{Outcome: store.RefreshImpossible}},
		} {
			res := tt.res
			t.Run(tt.name, func(t *testing.T) {
				id := fmt.Sprintf("c%d", res.Outcome)
				f.upsert(f.oauth, id, at(f.now.Add(-time.Minute)))
				exp := at(f.now.Add(-2 * time.Minute))
				c := f.claim(id)
				reimported := f.upsert(f.oauth, id, exp)
				if err := f.db.RecordRefresh(f.ctx, c, res); err != nil {
					t.Fatal(err)
				}
				st := f.state(id)
				if string(st.Credentials) != string(reimported) || !sameTime(st.ExpiresAt, exp) || st.Failures != 0 || st.UnavailableAt != nil {
					t.Errorf("state %+v, want the re-import's credentials %s and expiry, no history", st, reimported)
				}
			})
		}
	})
}

// TestClaimRefreshSerialises: while one refresh holds a connection, a second server's claim is
// refused at once rather than waiting, and reads and imports of the connection go on; once the
// first records its result, the second claims the connection and sees what the first stored.
func TestClaimRefreshSerialises(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		dbURL := b.NewURL(t)
		f := newRefreshFixtureOn(t, storetest.OpenURL(t, dbURL))
		other := storetest.OpenURL(t, dbURL) // a second server's store
		other.Now = f.db.Now
		f.upsert(f.oauth, "c", at(f.now.Add(-time.Minute)))
		f.upsert(f.oauth, "d", at(f.now.Add(-time.Minute)))
		renewed := json.RawMessage(`{"type":"OAUTH2","access_token":"renewed-by-the-first"}`)

		first := f.claim("c")
		ctx, cancel := context.WithTimeout(f.ctx, 2*time.Second)
		defer cancel()
		if _, err := other.ClaimRefresh(ctx, f.target("c"), lease); !errors.Is(err, store.ErrRefreshClaimed) {
			t.Fatalf("second claim while the first holds the connection: %v, want ErrRefreshClaimed", err)
		}
		// Another connection is not held.
		d, err := other.ClaimRefresh(ctx, f.target("d"), lease)
		if err != nil {
			t.Fatalf("claim of another connection: %v", err)
		}
		if err := other.RecordRefresh(ctx, d, store.RefreshResult{}); err != nil {
			t.Fatal(err)
		}
		read := f.target("c")
		read.WithCredentials = true
		if _, err := other.GetConnection(ctx, read); err != nil {
			t.Errorf("read during a refresh: %v", err)
		}
		if _, err := other.UpsertConnection(ctx, store.UpsertConnection{EnvironmentID: f.oauth.EnvironmentID, Integration: f.oauth,
			ConnectionID: "e", Credentials: json.RawMessage(`{"type":"OAUTH2","access_token":"e"}`)}); err != nil {
			t.Errorf("import during a refresh: %v", err)
		}

		if err := f.db.RecordRefresh(f.ctx, first, store.RefreshResult{Outcome: store.RefreshRenewed, Credentials: renewed, ExpiresAt: at(f.now.Add(time.Hour))}); err != nil {
			t.Fatal(err)
		}
		second, err := other.ClaimRefresh(ctx, f.target("c"), lease)
		if err != nil {
			t.Fatalf("claim after the first recorded: %v", err)
		}
		if string(second.State.Credentials) != string(renewed) {
			t.Errorf("the second refresh saw %s, want what the first stored", second.State.Credentials)
		}
		if err := other.RecordRefresh(ctx, second, store.RefreshResult{}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestClaimRefreshHoldsNoTransaction: a claim is over when ClaimRefresh returns; no transaction
// or lock stays open on the database while the caller asks the provider.
func TestClaimRefreshHoldsNoTransaction(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		if b.Name != "postgres" {
			t.Skip("PostgreSQL shows the sessions' transactions and locks; SQLite has one connection")
		}
		dbURL := b.NewURL(t)
		f := newRefreshFixtureOn(t, storetest.OpenURL(t, dbURL))
		f.upsert(f.oauth, "c", at(f.now.Add(-time.Minute)))
		c := f.claim("c")
		inTx, locks := storetest.Holding(t, dbURL)
		if inTx != 0 || locks != 0 {
			t.Errorf("while a refresh holds its claim: %d sessions in a transaction, %d locks; want none", inTx, locks)
		}
		if err := f.db.RecordRefresh(f.ctx, c, store.RefreshResult{}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestClaimRefreshLease: a claim its refresh never released (the server died) holds the
// connection until its lease ends; then another refresh claims it, and the first can no longer
// write its result.
func TestClaimRefreshLease(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		f := newRefreshFixture(t, b)
		imported := f.upsert(f.oauth, "c", at(f.now.Add(-time.Minute)))
		dead := f.claim("c")
		f.now = f.now.Add(lease)
		if _, err := f.db.ClaimRefresh(f.ctx, f.target("c"), lease); !errors.Is(err, store.ErrRefreshClaimed) {
			t.Fatalf("claim at the end of the lease: %v, want ErrRefreshClaimed", err)
		}
		f.now = f.now.Add(time.Second)
		next := f.claim("c")
		stale := json.RawMessage(`{"type":"OAUTH2","access_token":"from-the-dead-refresh"}`)
		if err := f.db.RecordRefresh(f.ctx, dead, store.RefreshResult{Outcome: store.RefreshRenewed, Credentials: stale}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.db.ClaimRefresh(f.ctx, f.target("c"), lease); !errors.Is(err, store.ErrRefreshClaimed) {
			t.Errorf("claim while the next refresh holds it: %v, want ErrRefreshClaimed: the dead one released it", err)
		}
		if err := f.db.RecordRefresh(f.ctx, next, store.RefreshResult{}); err != nil {
			t.Fatal(err)
		}
		if st := f.state("c"); string(st.Credentials) != string(imported) {
			t.Errorf("credentials %s, want the imported ones: a refresh whose lease ended wrote its result", st.Credentials)
		}
	})
}

func newRefreshFixtureOn(t *testing.T, db *store.DB) *refreshFixture {
	t.Helper()
	f := &refreshFixture{t: t, db: db, now: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC), ctx: context.Background()}
	db.Now = func() time.Time { return f.now }
	var err error
	f.oauth, err = db.CreateIntegration(f.ctx, store.NewIntegration{
		Environment: "dev", UniqueKey: "oauth", Provider: "fake", AuthMode: "OAUTH2",
		ClientID: "client", ClientSecret: "secret", TokenURL: "https://provider.example/token",
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestUpsertClearsRefreshHistory: a re-import forgets refusals and unavailability, so that an
// exhausted connection is due again.
func TestUpsertClearsRefreshHistory(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		f := newRefreshFixture(t, b)
		exp := at(f.now.Add(-time.Minute))
		f.upsert(f.oauth, "c", exp)
		for range 5 {
			f.record("c", refused("log-e"))
		}
		f.record("c", store.RefreshResult{Outcome: store.RefreshUnavailable})
		if h := f.history("c"); h.Failures != 5 || h.LogID == "" {
			t.Fatalf("history %+v, want 5 failures", h)
		}
		due := func() int {
			d, err := f.db.DueRefreshes(f.ctx, f.now.Add(15*time.Minute), f.now.Add(-30*time.Second), 5, 100)
			if err != nil {
				t.Fatal(err)
			}
			return len(d)
		}
		if n := due(); n != 0 {
			t.Errorf("%d due before the re-import, want 0", n)
		}
		f.now = f.now.Add(time.Second)
		f.upsert(f.oauth, "c", exp)
		h := f.history("c")
		st := f.state("c")
		if h.Failures != 0 || h.FailedAt != nil || h.Error != "" || h.LogID != "" || st.UnavailableAt != nil {
			t.Errorf("history %+v unavailable %v after a re-import, want none", h, st.UnavailableAt)
		}
		if n := due(); n != 1 {
			t.Errorf("%d due after the re-import, want 1", n)
		}
	})
}
