package importer

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progress counts outcomes and shows them: a live bar on a terminal, a plain line every so
// often otherwise. Only the collecting goroutine updates the counters; skip may run beside it.
// Records a previous run finished are not part of the bar or of any rate.
type progress struct {
	w                               io.Writer
	bar                             *progressbar.ProgressBar
	total                           int64
	created, updated, failed, valid int
	mu                              sync.Mutex
	skipped                         int
	start, last                     time.Time
	every                           time.Duration
}

func newProgress(w io.Writer, total int64, bar bool, every time.Duration) *progress {
	p := &progress{w: w, total: total, start: time.Now(), last: time.Now(), every: every}
	if bar {
		opts := []progressbar.Option{
			progressbar.OptionSetWriter(w),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("rec"),
			progressbar.OptionThrottle(100 * time.Millisecond),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowDescriptionAtLineEnd(),
			progressbar.OptionSetRenderBlankState(true),
		}
		if total >= 0 {
			opts = append(opts, progressbar.OptionSetPredictTime(true))
		} else {
			opts = append(opts, progressbar.OptionSetPredictTime(false), progressbar.OptionSpinnerType(14))
		}
		p.bar = progressbar.NewOptions64(total, opts...)
	}
	return p
}

// skip counts a record a previous run finished: the bar's length shrinks by one, so that its
// count and rate are of this run's records only.
func (p *progress) skip() {
	p.mu.Lock()
	p.skipped++
	p.mu.Unlock()
	if p.bar != nil && p.total >= 0 {
		p.bar.ChangeMax64(p.bar.GetMax64() - 1)
	}
}

func (p *progress) counts() (done, skipped int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.created + p.updated + p.failed + p.valid, p.skipped
}

// tick records one more outcome.
func (p *progress) tick() {
	if p.bar != nil {
		p.bar.Describe(fmt.Sprintf("created %d, updated %d, failed %d", p.created, p.updated, p.failed))
		_ = p.bar.Add(1)
		return
	}
	if now := time.Now(); now.Sub(p.last) >= p.every {
		p.last = now
		p.line(now)
	}
}

// line writes the counts: the records of this run, of those left when it started.
func (p *progress) line(now time.Time) {
	done, skipped := p.counts()
	of := ""
	if p.total >= 0 {
		of = fmt.Sprintf("/%d", p.total-int64(skipped))
	}
	rate := float64(done) / now.Sub(p.start).Seconds()
	fmt.Fprintf(p.w, "import: %d%s records, created %d, updated %d, failed %d, %.0f/s\n",
		done, of, p.created, p.updated, p.failed, rate)
}

// printf writes a message above the bar.
func (p *progress) printf(format string, args ...any) {
	if p.bar != nil {
		_ = p.bar.Clear()
	}
	fmt.Fprintf(p.w, format, args...)
}

// finish ends the display. A run that stopped early keeps the bar at its real count: the bar is
// replaced by a line of the counts, never filled.
func (p *progress) finish(stopped bool) {
	if p.bar == nil {
		return
	}
	if stopped {
		_ = p.bar.Clear()
		_ = p.bar.Exit()
		p.line(time.Now())
		return
	}
	_ = p.bar.Finish()
	fmt.Fprintln(p.w)
}
