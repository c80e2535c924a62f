package load

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jetsaga/jetsaga/client"
)

// lagSample is how many of the run's orders the lag is read from.
const lagSample = 500

// Lag is the read model's projection lag: how long after an event's
// transaction committed the read model recorded it.
type Lag struct {
	P50     float64 `json:"p50"`
	P99     float64 `json:"p99"`
	Max     float64 `json:"max"`
	Samples int     `json:"samples"` // events
	Source  string  `json:"source"`
}

// measureLag reads the timelines of up to lagSample orders of the run from
// the read model (each event's lag as it recorded it) once the read model
// has caught up (its /stats says no consumer is behind) or the wait is over.
// Events not projected by then are missing from the figures; notes say so.
func measureLag(ctx context.Context, hc *http.Client, readmodelURL string, ids []string, wait time.Duration) (Lag, []string) {
	var notes []string
	deadline := time.Now().Add(wait)
	for {
		behind, err := readmodelBehind(ctx, hc, readmodelURL)
		if err != nil {
			notes = append(notes, "read model /stats: "+err.Error())
			break
		}
		if behind == 0 {
			break
		}
		if time.Now().After(deadline) {
			notes = append(notes, fmt.Sprintf("read model still %d messages behind when its lag was read: the lag of those is not counted", behind))
			break
		}
		if !sleep(ctx, 50*time.Millisecond) {
			break
		}
	}

	c := &client.Client{HTTP: hc, ReadmodelURL: readmodelURL}
	h := newHistogram()
	var (
		mu      sync.Mutex
		missing int
		wg      sync.WaitGroup
		next    = make(chan string)
	)
	for range 16 {
		wg.Go(func() {
			for id := range next {
				v, found, err := c.Get(ctx, id)
				mu.Lock()
				if err != nil || !found {
					missing++
				}
				for _, e := range v.Timeline {
					_ = h.RecordValue(max(1, int64(e.LagMS*1000)))
				}
				mu.Unlock()
			}
		})
	}
	for _, id := range ids {
		next <- id
	}
	close(next)
	wg.Wait()
	if missing > 0 {
		notes = append(notes, fmt.Sprintf("%d of %d sampled orders not found in the read model", missing, len(ids)))
	}
	p := percentiles(h)
	return Lag{
		P50: p.P50, P99: p.P99, Max: p.Max, Samples: int(p.Count),
		Source: fmt.Sprintf("the timelines of %d orders of this run in the read model (GET /orders/{id}): every event's commit→projection lag", len(ids)-missing),
	}, notes
}

// readmodelBehind sums the messages the read model's consumers have not
// acknowledged, from its /stats.
func readmodelBehind(ctx context.Context, hc *http.Client, readmodelURL string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, readmodelURL+"/stats", nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return 0, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var st struct {
		Behind map[string]int64 `json:"behind"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, err
	}
	var n int64
	for consumer, b := range st.Behind {
		if b < 0 {
			return 0, fmt.Errorf("consumer %s: JetStream could not say how far behind it is", consumer)
		}
		n += b
	}
	return n, nil
}
