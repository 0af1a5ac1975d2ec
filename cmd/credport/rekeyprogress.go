package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"

	"github.com/credport/credport/store"
)

// rekeyProgressEvery is how often rekey reports its progress when not on a terminal.
const rekeyProgressEvery = 5 * time.Second

// rekeyProgress shows a rekey's progress: a live bar on a terminal, otherwise a line when
// rekeyProgressEvery has passed since the last one (by now, which tests drive).
type rekeyProgress struct {
	w    io.Writer
	tty  bool
	bar  *progressbar.ProgressBar
	now  func() time.Time
	last time.Time
}

func newRekeyProgress(w io.Writer, now func() time.Time) *rekeyProgress {
	f, ok := w.(*os.File)
	return &rekeyProgress{w: w, tty: ok && isatty.IsTerminal(f.Fd()), now: now, last: now()}
}

// update is called after each batch.
func (r *rekeyProgress) update(p store.RekeyProgress) {
	done := p.Connections.Done + p.Connections.Skipped + p.Connections.Failed
	doneIn := p.Integrations.Done + p.Integrations.Skipped + p.Integrations.Failed
	if r.tty {
		if r.bar == nil {
			r.bar = progressbar.NewOptions64(p.Connections.Total+p.Integrations.Total,
				progressbar.OptionSetWriter(r.w),
				progressbar.OptionSetDescription("rekey"),
				progressbar.OptionShowCount(),
				progressbar.OptionShowIts(),
				progressbar.OptionSetItsString("values"),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionSetWidth(30),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionSetRenderBlankState(true))
		}
		_ = r.bar.Set64(done + doneIn)
		return
	}
	if now := r.now(); now.Sub(r.last) >= rekeyProgressEvery {
		r.last = now
		fmt.Fprintf(r.w, "rekey: connections %d/%d, integrations %d/%d\n", done, p.Connections.Total, doneIn, p.Integrations.Total)
	}
}

// printf writes a message above the bar.
func (r *rekeyProgress) printf(format string, args ...any) {
	if r.bar != nil {
		_ = r.bar.Clear()
	}
	fmt.Fprintf(r.w, format, args...)
}

// finish ends the bar's line, frozen at the count reached.
func (r *rekeyProgress) finish() {
	if r.bar != nil {
		_ = r.bar.Exit()
		fmt.Fprintln(r.w)
	}
}
