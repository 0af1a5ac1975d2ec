package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// openGroupStore opens a store on dbURL with a group commit configuration of the test's own: one
// writer unless the test says, so that each group is taken once the one before is written.
func openGroupStore(t *testing.T, dbURL string, cfg store.Config) *store.DB {
	t.Helper()
	if cfg.GroupCommitWriters == 0 {
		cfg.GroupCommitWriters = 1
	}
	cfg.URL, cfg.Keys = dbURL, storetest.Keys(t)
	db, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// importResult is what one UpsertConnection answered.
type importResult struct {
	conn store.Connection
	err  error
}

// groupImports runs imports against db so that the first commits alone while all the others
// queue behind it, and then form groups: the first is sent while the database blocks writes,
// the others once it waits there, each once the one before is queued (so the queue holds them
// in order). cancel, when set, runs once every import is queued and before writes resume.
func groupImports(t *testing.T, db *store.DB, dbURL string, ins []store.UpsertConnection, ctxs []context.Context, cancel func()) []importResult {
	t.Helper()
	release := storetest.BlockWrites(t, dbURL)
	base := db.GroupCommitStats()
	out := make([]importResult, len(ins))
	var wg sync.WaitGroup
	for i, in := range ins {
		ctx := context.Background()
		if ctxs != nil && ctxs[i] != nil {
			ctx = ctxs[i]
		}
		wg.Go(func() {
			c, err := db.UpsertConnection(ctx, in)
			out[i] = importResult{c, err}
		})
		if i == 0 {
			storetest.WaitGroupCommit(t, db, "the first import taken", func(s store.GroupCommitStats) bool {
				return s.Groups == base.Groups+1 && s.Waiting == 0
			})
			continue
		}
		storetest.WaitGroupCommit(t, db, fmt.Sprintf("%d imports queued", i), func(s store.GroupCommitStats) bool {
			return s.Waiting == i
		})
	}
	if cancel != nil {
		cancel()
	}
	release()
	wg.Wait()
	return out
}

func oauth(token string) json.RawMessage {
	return json.RawMessage(`{"type":"OAUTH2","access_token":"` + token + `"}`)
}

func TestGroupCommitRefusedRowFailsAlone(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		dbURL := b.NewURL(t)
		db := openGroupStore(t, dbURL, store.Config{
			RefuseUpsert: func(in store.UpsertConnection) bool { return in.ConnectionID == "refused" },
		})
		in := newIntegration(t, db, "dev", "github", "OAUTH2")
		ids := []string{"first", "a", "refused", "b", "c"}
		ins := make([]store.UpsertConnection, len(ids))
		for i, id := range ids {
			ins[i] = store.UpsertConnection{EnvironmentID: in.EnvironmentID, Integration: in, ConnectionID: id,
				Credentials: oauth("token-" + id), Metadata: json.RawMessage(`{"n":` + fmt.Sprint(i) + `}`)}
		}
		res := groupImports(t, db, dbURL, ins, nil, nil)
		if s := db.GroupCommitStats(); s.Largest != len(ids)-1 || s.RowByRow != 1 {
			t.Fatalf("largest group %d, written row by row %d times; want the %d imports queued behind the first together, once",
				s.Largest, s.RowByRow, len(ids)-1)
		}
		for i, id := range ids {
			r := res[i]
			if id == "refused" {
				if r.err == nil {
					t.Errorf("%s: no error, want the database's refusal", id)
				}
				if _, err := db.ConnectionCredentials(context.Background(), in.EnvironmentID, "github", id); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("%s: stored (%v), want no row", id, err)
				}
				continue
			}
			if r.err != nil {
				t.Errorf("%s: %v", id, r.err)
				continue
			}
			if !r.conn.Created || r.conn.ConnectionID != id || string(r.conn.Credentials) != string(oauth("token-"+id)) {
				t.Errorf("%s: answered %+v, want its own new row", id, r.conn)
			}
			creds, err := db.ConnectionCredentials(context.Background(), in.EnvironmentID, "github", id)
			if err != nil || string(creds) != string(oauth("token-"+id)) {
				t.Errorf("%s: stored %s (%v), want its credentials", id, creds, err)
			}
		}
	})
}

func TestGroupCommitCancellation(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		dbURL := b.NewURL(t)
		db := openGroupStore(t, dbURL, store.Config{})
		in := newIntegration(t, db, "dev", "github", "OAUTH2")
		// "alone" is taken into a group of its own, which the database holds back, before its
		// context ends; "queued" is still waiting for a group when its context ends. Then
		// "in-group" ends while its group, with "other", is taken but not yet written.
		groupTaken, proceed := make(chan struct{}), make(chan struct{})
		store.OnGroupTaken(db, func(ids []string) {
			if len(ids) > 1 {
				close(groupTaken)
				<-proceed
			}
		})
		ids := []string{"alone", "queued", "in-group", "other"}
		ins := make([]store.UpsertConnection, len(ids))
		ctxs := make([]context.Context, len(ids))
		cancels := make([]context.CancelFunc, len(ids))
		for i, id := range ids {
			ins[i] = store.UpsertConnection{EnvironmentID: in.EnvironmentID, Integration: in, ConnectionID: id, Credentials: oauth(id)}
			ctxs[i], cancels[i] = context.WithCancel(context.Background())
			defer cancels[i]()
		}
		go func() {
			<-groupTaken
			cancels[2]()
			close(proceed)
		}()
		res := groupImports(t, db, dbURL, ins, ctxs, func() {
			cancels[0]()
			cancels[1]()
			// The queued import answers at once, while the database still blocks writes.
			storetest.WaitGroupCommit(t, db, "the cancelled import dequeued", func(s store.GroupCommitStats) bool {
				return s.Waiting == 2
			})
		})
		if s := db.GroupCommitStats(); s.Largest != 2 {
			t.Fatalf("largest group %d, want in-group and other together", s.Largest)
		}

		tests := []struct {
			id      string
			res     importResult
			wantErr error
		}{
			{"alone", res[0], nil},
			{"queued", res[1], context.Canceled},
			{"in-group", res[2], nil},
			{"other", res[3], nil},
		}
		for _, tt := range tests {
			t.Run(tt.id, func(t *testing.T) {
				_, stored := db.ConnectionCredentials(context.Background(), in.EnvironmentID, "github", tt.id)
				if tt.wantErr != nil {
					if !errors.Is(tt.res.err, tt.wantErr) {
						t.Errorf("error %v, want %v", tt.res.err, tt.wantErr)
					}
					if !errors.Is(stored, store.ErrNotFound) {
						t.Errorf("answered an error but the row is stored (%v)", stored)
					}
					return
				}
				if tt.res.err != nil || !tt.res.conn.Created {
					t.Errorf("answered %v (created %v), want its new row", tt.res.err, tt.res.conn.Created)
				}
				if stored != nil {
					t.Errorf("answered success but the row is not stored: %v", stored)
				}
			})
		}
	})
}

func TestGroupCommitGroups(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		dbURL := b.NewURL(t)
		db := openGroupStore(t, dbURL, store.Config{GroupCommitMax: 3})
		in := newIntegration(t, db, "dev", "github", "OAUTH2")
		// Behind "first": a, b, a again, c, d. The cap takes a, b, c; the second a waits for the
		// next group, with d, and so applies after the first a.
		ids := []string{"first", "a", "b", "a", "c", "d"}
		ins := make([]store.UpsertConnection, len(ids))
		for i, id := range ids {
			ins[i] = store.UpsertConnection{EnvironmentID: in.EnvironmentID, Integration: in, ConnectionID: id,
				Credentials: oauth(fmt.Sprintf("%s-%d", id, i))}
		}
		before := db.GroupCommitStats()
		res := groupImports(t, db, dbURL, ins, nil, nil)
		s := db.GroupCommitStats()
		if groups, largest := s.Groups-before.Groups, s.Largest; groups != 3 || largest != 3 {
			t.Errorf("%d groups, largest %d; want 3 groups (first; a, b, c; a, d), largest 3", groups, largest)
		}
		for i, id := range ids {
			if res[i].err != nil {
				t.Fatalf("import %d (%s): %v", i, id, res[i].err)
			}
			if want := string(oauth(fmt.Sprintf("%s-%d", id, i))); string(res[i].conn.Credentials) != want {
				t.Errorf("import %d: credentials %s, want its own %s", i, res[i].conn.Credentials, want)
			}
			if wantCreated := i != 3; res[i].conn.Created != wantCreated {
				t.Errorf("import %d (%s): created %v, want %v", i, id, res[i].conn.Created, wantCreated)
			}
		}
		if res[3].conn.ID != res[1].conn.ID || !res[3].conn.CreatedAt.Equal(res[1].conn.CreatedAt) || !res[3].conn.UpdatedAt.After(res[1].conn.UpdatedAt) {
			t.Errorf("second import of a: %+v, want the row of the first (%+v) updated later", res[3].conn, res[1].conn)
		}
		creds, err := db.ConnectionCredentials(context.Background(), in.EnvironmentID, "github", "a")
		if err != nil || string(creds) != string(oauth("a-3")) {
			t.Errorf("a holds %s (%v), want the later import's credentials", creds, err)
		}
	})
}

// TestGroupCommitSameAsAlone imports requests of every shape twice, each time both alone and in
// one group, and wants the same answers and rows from both.
func TestGroupCommitSameAsAlone(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		ctx := context.Background()
		aloneDB := storetest.Open(t, b)
		groupURL := b.NewURL(t)
		groupDB := openGroupStore(t, groupURL, store.Config{})
		aloneIn := newIntegration(t, aloneDB, "dev", "github", "OAUTH2")
		groupIn := newIntegration(t, groupDB, "dev", "github", "OAUTH2")

		exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
		shapes := []store.UpsertConnection{
			{Credentials: oauth("bare")},
			{Credentials: oauth("full"), CredentialsExpiresAt: &exp, ConnectionConfig: json.RawMessage(`{"c":1,"d":"x"}`),
				Metadata: json.RawMessage(`{"m":[1,2]}`), Tags: json.RawMessage(`{"t":"1"}`), EndUser: json.RawMessage(`{"id":"u"}`)},
			{Credentials: oauth("merge"), ConnectionConfig: json.RawMessage(`{"c":2}`), MergeConnectionConfig: true},
			{Credentials: oauth("meta"), Metadata: json.RawMessage(`{}`), Tags: json.RawMessage(`{"a":"b"}`)},
		}
		// Round 1 creates every connection with the first shape, round 2 updates each with every shape.
		var rounds [][]store.UpsertConnection
		var round1, round2 []store.UpsertConnection
		for i := range shapes {
			for j, s := range shapes {
				id := fmt.Sprintf("c%d-%d", i, j)
				first := shapes[i]
				first.ConnectionID = id
				round1 = append(round1, first)
				s.ConnectionID = id
				round2 = append(round2, s)
			}
		}
		rounds = append(rounds, round1, round2)
		for r, round := range rounds {
			alone := make([]store.Connection, len(round))
			for i, u := range round {
				u.EnvironmentID, u.Integration = aloneIn.EnvironmentID, aloneIn
				c, err := aloneDB.UpsertConnection(ctx, u)
				if err != nil {
					t.Fatalf("round %d, alone %s: %v", r, u.ConnectionID, err)
				}
				alone[i] = c
			}
			// A first import holds the group back, so that the round is one group.
			grouped := append([]store.UpsertConnection{{ConnectionID: fmt.Sprintf("holder-%d", r), Credentials: oauth("h")}}, round...)
			for i := range grouped {
				grouped[i].EnvironmentID, grouped[i].Integration = groupIn.EnvironmentID, groupIn
			}
			res := groupImports(t, groupDB, groupURL, grouped, nil, nil)
			if s := groupDB.GroupCommitStats(); s.Largest != len(round) {
				t.Fatalf("round %d: largest group %d, want %d", r, s.Largest, len(round))
			}
			for i, g := range res[1:] {
				if g.err != nil {
					t.Fatalf("round %d, grouped %s: %v", r, round[i].ConnectionID, g.err)
				}
				a, c := alone[i], g.conn
				if a.Created != c.Created || a.ConnectionID != c.ConnectionID || string(a.Credentials) != string(c.Credentials) ||
					!jsonEqual(t, string(a.ConnectionConfig), string(c.ConnectionConfig)) || !jsonEqual(t, string(a.Metadata), string(c.Metadata)) ||
					!jsonEqual(t, string(a.Tags), string(c.Tags)) || string(a.EndUser) != string(c.EndUser) {
					t.Errorf("round %d, %s:\n grouped %+v\n alone   %+v", r, a.ConnectionID, c, a)
				}
				if !c.UpdatedAt.Equal(c.LastFetchedAt) || c.Created != c.CreatedAt.Equal(c.UpdatedAt) {
					t.Errorf("round %d, %s: timestamps %v %v %v do not fit created=%v", r, a.ConnectionID, c.CreatedAt, c.UpdatedAt, c.LastFetchedAt, c.Created)
				}
				got, err := groupDB.GetConnection(ctx, store.ReadConnection{EnvironmentID: groupIn.EnvironmentID, Integration: groupIn, ConnectionID: a.ConnectionID})
				if err != nil {
					t.Fatal(err)
				}
				want, err := aloneDB.GetConnection(ctx, store.ReadConnection{EnvironmentID: aloneIn.EnvironmentID, Integration: aloneIn, ConnectionID: a.ConnectionID})
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(got.Refresh.ExpiresAt) != fmt.Sprint(want.Refresh.ExpiresAt) || !jsonEqual(t, string(got.Tags), string(want.Tags)) {
					t.Errorf("round %d, %s: stored expiry %v tags %s, alone %v %s", r, a.ConnectionID,
						got.Refresh.ExpiresAt, got.Tags, want.Refresh.ExpiresAt, want.Tags)
				}
			}
		}
	})
}

// TestGroupCommitLargeGroup commits a group larger than one SQLite statement takes.
func TestGroupCommitLargeGroup(t *testing.T) {
	const n = 2600 // 13 parameters a row: over SQLite's 32766
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		dbURL := b.NewURL(t)
		db := openGroupStore(t, dbURL, store.Config{GroupCommitMax: 3000})
		in := newIntegration(t, db, "dev", "github", "OAUTH2")
		release := storetest.BlockWrites(t, dbURL)
		base := db.GroupCommitStats()
		errs := make([]error, n+1)
		var wg sync.WaitGroup
		upsert := func(i int) {
			wg.Go(func() {
				_, errs[i] = db.UpsertConnection(context.Background(), store.UpsertConnection{
					EnvironmentID: in.EnvironmentID, Integration: in, ConnectionID: fmt.Sprintf("c-%d", i), Credentials: oauth("t")})
			})
		}
		upsert(0)
		storetest.WaitGroupCommit(t, db, "the first import taken", func(s store.GroupCommitStats) bool {
			return s.Groups == base.Groups+1 && s.Waiting == 0
		})
		for i := 1; i <= n; i++ {
			upsert(i)
		}
		storetest.WaitGroupCommit(t, db, "every import queued", func(s store.GroupCommitStats) bool { return s.Waiting == n })
		release()
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("import %d: %v", i, err)
			}
		}
		if s := db.GroupCommitStats(); s.Largest != n || s.RowByRow != 0 {
			t.Errorf("largest group %d, written row by row %d times; want %d, 0", s.Largest, s.RowByRow, n)
		}
		pool, err := db.SQL()
		if err != nil {
			t.Fatal(err)
		}
		var stored int
		if err := pool.QueryRow("SELECT count(*) FROM connections").Scan(&stored); err != nil || stored != n+1 {
			t.Errorf("%d connections stored (%v), want %d", stored, err, n+1)
		}
	})
}

// TestGroupCommitWriters: on PostgreSQL two groups are written at once, but a row whose key is in
// the group being written waits for it, so that imports of one connection still apply in order.
// A second group is written beside one only from a queue of some length on: here, one row.
// SQLite, with one writer, writes one group at a time.
func TestGroupCommitWriters(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		dbURL := b.NewURL(t)
		db := openGroupStore(t, dbURL, store.Config{GroupCommitWriters: 2})
		store.WriteGroupsBesideFrom(db, 1)
		in := newIntegration(t, db, "dev", "github", "OAUTH2")
		release := storetest.BlockWrites(t, dbURL)
		base := db.GroupCommitStats()
		ids := []string{"a", "a", "b"}
		// The first a is being written; the second waits for it; b is written beside it, or on
		// SQLite waits too, and then goes with the second a.
		placed := []store.GroupCommitStats{{Groups: 1, Waiting: 0}, {Groups: 1, Waiting: 1}, {Groups: 2, Waiting: 1}}
		groups := int64(3)
		if b.Name == "sqlite" {
			placed[2], groups = store.GroupCommitStats{Groups: 1, Waiting: 2}, 2
		}
		res := make([]importResult, len(ids))
		var wg sync.WaitGroup
		for i, id := range ids {
			wg.Go(func() {
				c, err := db.UpsertConnection(context.Background(), store.UpsertConnection{EnvironmentID: in.EnvironmentID,
					Integration: in, ConnectionID: id, Credentials: oauth(fmt.Sprintf("%s-%d", id, i))})
				res[i] = importResult{c, err}
			})
			storetest.WaitGroupCommit(t, db, fmt.Sprintf("import %d placed", i), func(s store.GroupCommitStats) bool {
				return s.Groups-base.Groups == placed[i].Groups && s.Waiting == placed[i].Waiting
			})
		}
		release()
		wg.Wait()
		for i, id := range ids {
			if res[i].err != nil {
				t.Fatalf("import %d (%s): %v", i, id, res[i].err)
			}
			if wantCreated := i != 1; res[i].conn.Created != wantCreated {
				t.Errorf("import %d (%s): created %v, want %v", i, id, res[i].conn.Created, wantCreated)
			}
		}
		if s := db.GroupCommitStats(); s.Groups-base.Groups != groups {
			t.Errorf("%d groups, want %d", s.Groups-base.Groups, groups)
		}
		creds, err := db.ConnectionCredentials(context.Background(), in.EnvironmentID, "github", "a")
		if err != nil || string(creds) != string(oauth("a-1")) {
			t.Errorf("a holds %s (%v), want the later import's credentials", creds, err)
		}
	})
}
