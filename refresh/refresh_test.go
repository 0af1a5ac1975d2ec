package refresh_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/credport/credport/provider"
	"github.com/credport/credport/provider/providertest"
	"github.com/credport/credport/refresh"
	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// clock is a time that moves only when the test says.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// fixture is a database with an integration "oauth" that renews its tokens at a fake provider,
// and the clock of the store and of the refreshers.
type fixture struct {
	t        *testing.T
	dbURL    string
	db       *store.DB
	provider *providertest.Provider
	oauth    store.Integration
	clock    *clock
}

func newFixture(t *testing.T, b storetest.Backend) *fixture {
	t.Helper()
	f := &fixture{t: t, dbURL: b.NewURL(t), clock: &clock{now: time.Now().UTC().Truncate(time.Second)}}
	f.db = f.open()
	f.provider = providertest.New(t, "client-id", "client-secret")
	var err error
	f.oauth, err = f.db.CreateIntegration(context.Background(), store.NewIntegration{
		Environment: "dev", UniqueKey: "oauth", Provider: "fake", AuthMode: "OAUTH2",
		ClientID: f.provider.ClientID, ClientSecret: f.provider.ClientSecret, TokenURL: f.provider.TokenURL(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// open is another store on the fixture's database, as a second server opens it.
func (f *fixture) open() *store.DB {
	db := storetest.OpenURL(f.t, f.dbURL)
	db.Now = f.clock.Now
	return db
}

// refresher is a Refresher on st with the fixture's clock.
func (f *fixture) refresher(st refresh.Store) *refresh.Refresher {
	f.t.Helper()
	r, err := refresh.New(refresh.Config{
		Store:  st,
		Client: &provider.Client{HTTP: provider.NewHTTPClient(), Timeout: 5 * time.Second, Now: time.Now},
		Window: 15 * time.Minute, Backoff: 30 * time.Second, DBTimeout: 5 * time.Second,
		Now: f.clock.Now, Registry: prometheus.NewRegistry(),
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

// importExpiring imports connection id of in with a refresh token the provider accepts (none
// when in has no token URL) and a token that expires at exp.
func (f *fixture) importExpiring(in store.Integration, id string, exp time.Time) {
	f.t.Helper()
	creds := map[string]any{"type": "OAUTH2", "access_token": "old-" + id, "expires_at": exp.UTC().Format(time.RFC3339)}
	if in.TokenURL != "" {
		creds["refresh_token"] = f.provider.IssueRefreshToken()
	}
	raw, err := json.Marshal(creds)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.db.UpsertConnection(context.Background(), store.UpsertConnection{
		EnvironmentID: in.EnvironmentID, Integration: in, ConnectionID: id, Credentials: raw, CredentialsExpiresAt: &exp,
	}); err != nil {
		f.t.Fatal(err)
	}
}

// read is connection id of in with its credentials, as a read that may refresh it finds it.
func (f *fixture) read(in store.Integration, id string) (store.ReadConnection, store.Connection) {
	f.t.Helper()
	target := store.ReadConnection{EnvironmentID: in.EnvironmentID, Integration: in, ConnectionID: id, WithCredentials: true}
	conn, err := f.db.GetConnection(context.Background(), target)
	if err != nil {
		f.t.Fatal(err)
	}
	return target, conn
}

func accessToken(t *testing.T, conn store.Connection) string {
	t.Helper()
	var creds struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(conn.Credentials, &creds); err != nil {
		t.Fatal(err)
	}
	return creds.AccessToken
}

// TestSingleFlightAcrossServers: 50 callers that found one token due, spread over two servers
// on one database, make one provider call, and all learn that the token changed.
func TestSingleFlightAcrossServers(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		f := newFixture(t, b)
		// Slow, so that the callers overlap; rotating, so that a second call would be refused.
		f.provider.SetDelay(300 * time.Millisecond)
		f.provider.SetRotate(true)
		refreshers := []*refresh.Refresher{f.refresher(f.db), f.refresher(f.open())}
		f.importExpiring(f.oauth, "c", f.clock.Now().Add(-time.Minute))
		target, conn := f.read(f.oauth, "c")

		const n = 50
		changed := make([]bool, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				changed[i], errs[i] = refreshers[i%2].RenewIfDue(context.Background(), target, conn, false)
			})
		}
		close(start)
		wg.Wait()
		if calls := f.provider.Calls(); calls != 1 {
			t.Errorf("provider calls %d, want exactly 1", calls)
		}
		for i := range n {
			if errs[i] != nil || !changed[i] {
				t.Errorf("caller %d: changed %v, err %v; want the token changed", i, changed[i], errs[i])
			}
		}
		if _, now := f.read(f.oauth, "c"); accessToken(t, now) == "old-c" {
			t.Errorf("stored access token %q, want the renewed one", accessToken(t, now))
		}
	})
}

// TestProviderCallHoldsNoTransaction: while the provider is being asked, no transaction or lock
// is open on the database, and a re-import of the connection goes through at once and wins over
// the refresh's result.
func TestProviderCallHoldsNoTransaction(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		f := newFixture(t, b)
		r := f.refresher(f.db)
		f.importExpiring(f.oauth, "c", f.clock.Now().Add(-time.Minute))
		target, conn := f.read(f.oauth, "c")
		arrived, release := f.provider.Hold()
		defer release()
		done := make(chan error, 1)
		go func() {
			_, err := r.RenewIfDue(context.Background(), target, conn, false)
			done <- err
		}()
		select {
		case <-arrived:
		case err := <-done:
			t.Fatalf("the refresh ended before it called the provider: %v", err)
		}

		if b.Name == "postgres" {
			inTx, locks := storetest.Holding(t, f.dbURL)
			if inTx != 0 || locks != 0 {
				t.Errorf("during the provider call: %d sessions in a transaction, %d advisory locks; want none", inTx, locks)
			}
		}
		other := f.open()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		reimport := json.RawMessage(`{"type":"OAUTH2","access_token":"re-imported"}`)
		if _, err := other.UpsertConnection(ctx, store.UpsertConnection{EnvironmentID: f.oauth.EnvironmentID,
			Integration: f.oauth, ConnectionID: "c", Credentials: reimport}); err != nil {
			t.Fatalf("re-import during the provider call: %v", err)
		}

		release()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if _, now := f.read(f.oauth, "c"); accessToken(t, now) != "re-imported" {
			t.Errorf("stored access token %q, want the re-import's", accessToken(t, now))
		}
	})
}

// TestErrors: a refresh that renews nothing says why with an *Error of its kind, in words the
// caller can act on; an unreachable provider leaves a token that has not expired to be used.
func TestErrors(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		f := newFixture(t, b)
		r := f.refresher(f.db)
		plain, err := f.db.CreateIntegration(context.Background(), store.NewIntegration{
			Environment: "dev", UniqueKey: "plain", Provider: "fake", AuthMode: "OAUTH2"})
		if err != nil {
			t.Fatal(err)
		}
		renew := func(in store.Integration, id string, force bool) (bool, error) {
			target, conn := f.read(in, id)
			return r.RenewIfDue(context.Background(), target, conn, force)
		}
		expired := f.clock.Now().Add(-time.Minute)
		tests := []struct {
			name  string
			setup func(id string) (bool, error) // the refresh whose error is looked at
			kind  refresh.Kind                  // 0: no error
			msg   string
		}{
			{name: "refused", kind: refresh.Refused,
				msg: "The provider refused to refresh the access token: invalid_grant: The refresh token is invalid or revoked",
				setup: func(id string) (bool, error) {
					f.provider.SetMode(providertest.InvalidGrant)
					f.importExpiring(f.oauth, id, expired)
					return renew(f.oauth, id, false)
				}},
			{name: "backing off", kind: refresh.BackingOff, msg: "A recent refresh attempt failed. Backing off before retrying.",
				setup: func(id string) (bool, error) {
					f.provider.SetMode(providertest.InvalidGrant)
					f.importExpiring(f.oauth, id, expired)
					_, _ = renew(f.oauth, id, false)
					return renew(f.oauth, id, false)
				}},
			{name: "exhausted", kind: refresh.Exhausted,
				msg: "The refresh limit has been reached for this connection. Import it again with working credentials.",
				setup: func(id string) (bool, error) {
					f.provider.SetMode(providertest.InvalidGrant)
					f.importExpiring(f.oauth, id, expired)
					for range 5 {
						_, _ = renew(f.oauth, id, true)
					}
					return renew(f.oauth, id, true)
				}},
			{name: "unavailable, token expired", kind: refresh.Unavailable,
				msg: "The provider could not be reached to refresh the access token. Please try again later.",
				setup: func(id string) (bool, error) {
					f.provider.SetMode(providertest.Fail)
					f.importExpiring(f.oauth, id, expired)
					return renew(f.oauth, id, false)
				}},
			{name: "unavailable, token still valid",
				setup: func(id string) (bool, error) {
					f.provider.SetMode(providertest.Fail)
					f.importExpiring(f.oauth, id, f.clock.Now().Add(10*time.Minute))
					return renew(f.oauth, id, false)
				}},
			{name: "no token URL, forced", kind: refresh.Impossible,
				msg: "Cannot refresh: token refresh is not configured for the integration plain",
				setup: func(id string) (bool, error) {
					f.importExpiring(plain, id, expired)
					return renew(plain, id, true)
				}},
			{name: "no refresh token", kind: refresh.Impossible, msg: "Cannot refresh: the connection has no refresh token",
				setup: func(id string) (bool, error) {
					raw := json.RawMessage(`{"type":"OAUTH2","access_token":"old"}`)
					if _, err := f.db.UpsertConnection(context.Background(), store.UpsertConnection{EnvironmentID: f.oauth.EnvironmentID,
						Integration: f.oauth, ConnectionID: id, Credentials: raw, CredentialsExpiresAt: &expired}); err != nil {
						t.Fatal(err)
					}
					return renew(f.oauth, id, false)
				}},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				f.provider.SetMode(providertest.OK)
				changed, err := tt.setup(fmt.Sprintf("c%d", i))
				if changed {
					t.Error("changed, want the credentials as they were")
				}
				if tt.kind == 0 {
					if err != nil {
						t.Errorf("err %v, want none", err)
					}
					return
				}
				var e *refresh.Error
				if !errors.As(err, &e) {
					t.Fatalf("err %v (%T), want a *refresh.Error", err, err)
				}
				if e.Kind != tt.kind || e.Message != tt.msg {
					t.Errorf("kind %d message %q, want %d %q", e.Kind, e.Message, tt.kind, tt.msg)
				}
			})
		}
	})
}

// claimWatch is a Store that tells the test each time a claim finds another refresh holding the
// connection.
type claimWatch struct {
	refresh.Store
	held chan struct{}
}

func (w claimWatch) ClaimRefresh(ctx context.Context, in store.ReadConnection, lease time.Duration) (store.RefreshClaim, error) {
	c, err := w.Store.ClaimRefresh(ctx, in, lease)
	if errors.Is(err, store.ErrRefreshClaimed) {
		select {
		case w.held <- struct{}{}:
		default:
		}
	}
	return c, err
}

// TestWaitsOutDeadClaim: a claim that a dead server left holds the connection until its lease
// ends; a refresh waits for that, then renews the token.
func TestWaitsOutDeadClaim(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		f := newFixture(t, b)
		f.importExpiring(f.oauth, "c", f.clock.Now().Add(-time.Minute))
		target, conn := f.read(f.oauth, "c")
		if _, err := f.db.ClaimRefresh(context.Background(), target, time.Minute); err != nil {
			t.Fatal(err)
		}
		watch := claimWatch{Store: f.db, held: make(chan struct{}, 1)}
		r := f.refresher(watch)
		type result struct {
			changed bool
			err     error
		}
		done := make(chan result, 1)
		go func() {
			changed, err := r.RenewIfDue(context.Background(), target, conn, false)
			done <- result{changed, err}
		}()
		for range 2 { // it found the claim held, and looked again
			select {
			case <-watch.held:
			case res := <-done:
				t.Fatalf("the refresh ended while a claim held the connection: %+v", res)
			}
		}
		if f.provider.Calls() != 0 {
			t.Fatalf("provider calls %d while the claim held, want none", f.provider.Calls())
		}
		f.clock.Add(2 * time.Minute)
		res := <-done
		if res.err != nil || !res.changed || f.provider.Calls() != 1 {
			t.Errorf("after the lease: changed %v, err %v, provider calls %d; want a renewal", res.changed, res.err, f.provider.Calls())
		}
	})
}
