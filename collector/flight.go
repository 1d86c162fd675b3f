package collector

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultTimeout bounds a collector's run when the scrape that starts it has no deadline (Collect, or a
// scrape without X-Prometheus-Scrape-Timeout-Seconds): beyond any scrape timeout Prometheus allows by default.
const DefaultTimeout = 30 * time.Second

// flight runs one collector for every scrape. A scrape that arrives while a run is in progress waits for
// that run and shares its result instead of starting another: 50 concurrent scrapes of 200,000 sockets make
// one dump, not 50 in turn, and an HA pair of Prometheus servers does not double the work. A result younger
// than maxAge is served again. A run belongs to no single scrape: a client that hangs up does not cancel it
// for the others, and it stops at the deadline of the scrape that started it.
//
// Because runs never overlap, a collector stuck in a read that cannot be interrupted (a FIFO where a /proc
// file should be) holds one goroutine, not one per scrape: later scrapes wait for the stuck run until their
// own deadline and report the collector as failed.
type flight struct {
	c      Collector
	maxAge time.Duration

	mu   sync.Mutex
	cur  *run // in progress, or nil
	last *run // the latest finished run
}

// run is one call of the collector's Update.
type run struct {
	done     chan struct{}
	start    time.Time
	end      time.Time
	metrics  []prometheus.Metric
	err      error
	duration time.Duration
}

type result struct {
	name     string
	metrics  []prometheus.Metric
	err      error
	duration time.Duration
	run      *run // the finished run it comes from; nil for a scrape that stopped waiting
}

// result returns the result of a run that is in progress, or fresh enough, or of a new one, or a failure
// when ctx ends first.
func (f *flight) result(ctx context.Context) result {
	f.mu.Lock()
	r := f.cur
	if r == nil {
		if l := f.last; l != nil && f.maxAge > 0 && time.Since(l.end) < f.maxAge {
			f.mu.Unlock()
			return result{metrics: l.metrics, err: l.err, duration: l.duration, run: l}
		}
		r = &run{done: make(chan struct{}), start: time.Now()}
		f.cur = r
		go f.run(ctx, r)
	}
	f.mu.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		// A scrape without a deadline must not wait for ever on a run that is stuck.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	select {
	case <-r.done:
		return result{metrics: r.metrics, err: r.err, duration: r.duration, run: r}
	case <-ctx.Done():
		return result{err: scrapeEnded(ctx), duration: time.Since(r.start)}
	}
}

// scrapeEnded says why a scrape stopped waiting: its deadline, or its client going away.
func scrapeEnded(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("scrape deadline passed before the collector finished: %w", ctx.Err())
	}
	return fmt.Errorf("scrape cancelled (the client went away) before the collector finished: %w", ctx.Err())
}

func (f *flight) run(scrape context.Context, r *run) {
	deadline, ok := scrape.Deadline()
	if !ok {
		deadline = r.start.Add(DefaultTimeout)
	}
	ctx, cancel := context.WithDeadline(context.WithoutCancel(scrape), deadline)
	defer cancel()
	r.metrics, r.err = collect(ctx, f.c)
	r.end = time.Now()
	r.duration = r.end.Sub(r.start)
	f.mu.Lock()
	f.cur, f.last = nil, r
	f.mu.Unlock()
	close(r.done)
}

// collect calls Update and gathers what it sends.
func collect(ctx context.Context, c Collector) (metrics []prometheus.Metric, err error) {
	mc := make(chan prometheus.Metric, 64)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for m := range mc {
			metrics = append(metrics, m)
		}
	}()
	func() {
		// A panicking collector is a bug, but it must not take the other collectors or the process down.
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("collector panicked: %v", p)
			}
		}()
		err = c.Update(ctx, mc)
	}()
	close(mc)
	wg.Wait()
	return metrics, err
}
