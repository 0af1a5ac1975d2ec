package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"
)

// load is the traffic of one scenario: import clients that write new connections and readers
// that read acknowledged ones back, through both replicas, recording every answer.
type load struct {
	key      string
	replicas []string
	prefix   string
	client   *http.Client

	mu sync.Mutex
	// acked are the imports answered 200: connection id to the API key it was sent.
	acked map[string]string
	ids   []string
	// okTimes are when successful imports were answered.
	okTimes []time.Time
	imports map[int]int // status (0: no answer) to count
	reads   map[int]int
	// noAnswer holds the errors of requests that got no answer, or a 503 without Retry-After.
	noAnswer []string
}

func newLoad(key, prefix string, replicas []string) *load {
	return &load{
		key: key, prefix: prefix, replicas: replicas,
		// Longer than the server's own 4 s deadline for database work: a request still unanswered
		// at 10 s hung.
		client:  &http.Client{Timeout: 10 * time.Second},
		acked:   map[string]string{},
		imports: map[int]int{}, reads: map[int]int{},
	}
}

func (l *load) request(ctx context.Context, method, base, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+l.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
		return resp.StatusCode, b, fmt.Errorf("503 without Retry-After: %s", b)
	}
	return resp.StatusCode, b, err
}

func importBody(connID, secret string) []byte {
	b, _ := json.Marshal(map[string]any{
		"provider_config_key": "openai", "connection_id": connID,
		"credentials": map[string]string{"type": "API_KEY", "apiKey": secret},
	})
	return b
}

// importer writes new connections until ctx ends.
func (l *load) importer(ctx context.Context, client int) {
	base := l.replicas[client%len(l.replicas)]
	for n := 0; ctx.Err() == nil; n++ {
		id := fmt.Sprintf("%s-c%d-%d", l.prefix, client, n)
		secret := fmt.Sprintf("sk-%d-%d", client, rand.Int64())
		status, _, err := l.request(context.WithoutCancel(ctx), http.MethodPost, base, "/connections", importBody(id, secret))
		l.mu.Lock()
		l.imports[status]++
		if err != nil {
			l.noAnswer = append(l.noAnswer, err.Error())
		}
		if status == http.StatusOK {
			l.acked[id] = secret
			l.ids = append(l.ids, id)
			l.okTimes = append(l.okTimes, time.Now())
		}
		l.mu.Unlock()
		if status != http.StatusOK {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// reader reads acknowledged connections until ctx ends.
func (l *load) reader(ctx context.Context, client int) {
	base := l.replicas[client%len(l.replicas)]
	for ctx.Err() == nil {
		l.mu.Lock()
		var id string
		if len(l.ids) > 0 {
			id = l.ids[rand.IntN(len(l.ids))]
		}
		l.mu.Unlock()
		if id == "" {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		status, _, err := l.request(context.WithoutCancel(ctx), http.MethodGet, base, "/connections/"+url.PathEscape(id)+"?provider_config_key=openai", nil)
		l.mu.Lock()
		l.reads[status]++
		if err != nil {
			l.noAnswer = append(l.noAnswer, err.Error())
		}
		l.mu.Unlock()
		if status != http.StatusOK {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// longestGap is the longest time between two successful imports, or from the kill to the first
// success after it, within [from, to].
func (l *load) longestGap(from, to time.Time) time.Duration {
	l.mu.Lock()
	times := append([]time.Time{from}, l.okTimes...)
	l.mu.Unlock()
	times = append(times, to)
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	var gap time.Duration
	for i := 1; i < len(times); i++ {
		gap = max(gap, times[i].Sub(times[i-1]))
	}
	return gap
}

// lost reads every acknowledged import back and counts those missing or with other credentials.
func (l *load) lost(ctx context.Context) (int, error) {
	type item struct{ id, secret string }
	work := make(chan item)
	var (
		mu      sync.Mutex
		lost    int
		firstEx error
		wg      sync.WaitGroup
	)
	for w := range 8 {
		wg.Go(func() {
			base := l.replicas[w%len(l.replicas)]
			for it := range work {
				var status int
				var body []byte
				var err error
				for range 20 { // the database is back; a 503 here would be a replica still finding it
					status, body, err = l.request(ctx, http.MethodGet, base, "/connections/"+url.PathEscape(it.id)+"?provider_config_key=openai", nil)
					if status != http.StatusServiceUnavailable && err == nil {
						break
					}
					time.Sleep(500 * time.Millisecond)
				}
				var got struct {
					Credentials struct {
						APIKey string `json:"apiKey"`
					} `json:"credentials"`
				}
				ok := status == http.StatusOK && json.Unmarshal(body, &got) == nil && got.Credentials.APIKey == it.secret
				if !ok {
					mu.Lock()
					lost++
					if firstEx == nil {
						firstEx = fmt.Errorf("%s: status %d, err %v: %.200s", it.id, status, err, body)
					}
					mu.Unlock()
				}
			}
		})
	}
	l.mu.Lock()
	items := make([]item, 0, len(l.acked))
	for id, s := range l.acked {
		items = append(items, item{id, s})
	}
	l.mu.Unlock()
	for _, it := range items {
		work <- it
	}
	close(work)
	wg.Wait()
	return lost, firstEx
}
