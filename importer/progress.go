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

func (p *progress) skip() {
	p.mu.Lock()
	p.skipped++
	p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Add(1)
	}
}

func (p *progress) done() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.created + p.updated + p.failed + p.valid + p.skipped
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

func (p *progress) line(now time.Time) {
	done := p.done()
	of := ""
	if p.total >= 0 {
		of = fmt.Sprintf("/%d", p.total)
	}
	rate := float64(done-p.skipped) / now.Sub(p.start).Seconds()
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

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
		fmt.Fprintln(p.w)
	}
}
