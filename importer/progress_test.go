package importer

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestProgressLeavesOutSkipped checks that records a previous run finished count neither in the
// bar nor in the rate of a resumed run.
func TestProgressLeavesOutSkipped(t *testing.T) {
	t.Run("bar", func(t *testing.T) {
		p := newProgress(&bytes.Buffer{}, 100, true, time.Hour)
		for range 60 {
			p.skip()
		}
		for range 10 {
			p.created++
			p.tick()
		}
		if s := p.bar.State(); s.CurrentNum != 10 || s.Max != 40 {
			t.Errorf("bar at %d of %d, want 10 of 40", s.CurrentNum, s.Max)
		}
	})
	t.Run("line", func(t *testing.T) {
		var out bytes.Buffer
		p := newProgress(&out, 100, false, time.Hour)
		for range 60 {
			p.skip()
		}
		p.created = 10
		p.line(p.start.Add(time.Second))
		if got := out.String(); !strings.HasPrefix(got, "import: 10/40 records") || !strings.Contains(got, " 10/s") {
			t.Errorf("line %q, want 10 of 40 at 10/s", got)
		}
	})
}
