package store_test

import (
	"context"
	"encoding/json"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/credport/credport/store"
	"github.com/credport/credport/store/storetest"
)

// BenchmarkUpsertConnectionConcurrent imports distinct connections from 64 goroutines at once,
// as the batch endpoint or many clients do, so that imports are committed in groups. It reports
// the mean group size.
func BenchmarkUpsertConnectionConcurrent(b *testing.B) {
	for _, be := range storetest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			db := storetest.Open(b, be)
			in, err := db.CreateIntegration(context.Background(), store.NewIntegration{
				Environment: "dev", UniqueKey: "github", Provider: "github", AuthMode: "OAUTH2",
			})
			if err != nil {
				b.Fatal(err)
			}
			var seq atomic.Int64
			before := db.GroupCommitStats()
			b.SetParallelism(32) // 64 goroutines on 2 CPUs
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_, err := db.UpsertConnection(context.Background(), store.UpsertConnection{
						EnvironmentID: in.EnvironmentID, Integration: in,
						ConnectionID: "bench-" + strconv.FormatInt(seq.Add(1), 10),
						Credentials:  json.RawMessage(benchCredentials),
						Metadata:     json.RawMessage(`{"account_id":"acct_1","plan":"enterprise","seats":12,"migrated":true}`),
						Tags:         json.RawMessage(`{"end_user_id":"user-1","organization_id":"org-1"}`),
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			s := db.GroupCommitStats()
			if groups := s.Groups - before.Groups; groups > 0 {
				b.ReportMetric(float64(s.Rows-before.Rows)/float64(groups), "rows/group")
			}
		})
	}
}
