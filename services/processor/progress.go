package processor

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/jobstore"
)

const (
	// progressEvery is the most often a running job's progress is written
	// to its record (Config.progressEvery in tests).
	progressEvery = time.Second
	// MaxProgressBytes bounds one progress report, as JSON: the record
	// holding it also holds the payload and the result, and must fit in
	// one NATS message.
	MaxProgressBytes = 64 << 10
)

// progress keeps the latest progress a handler reported for one attempt and
// writes it to the job's record, at most every progressEvery, once the
// record says running (live): a job done within RunningAfter has no running
// record, and its last report is written with its result instead.
type progress struct {
	p     *Processor
	id    string
	every time.Duration
	kick  chan struct{}
	done  chan struct{}
	wg    sync.WaitGroup

	mu      sync.Mutex
	latest  []byte
	live    bool // the record says running: writes may start
	started bool // the writer runs
	stopped bool // the handler has returned: reports are ignored
}

func (p *Processor) newProgress(id string, live bool) *progress {
	return &progress{p: p, id: id, every: p.cfg.progressEvery, live: live, kick: make(chan struct{}, 1), done: make(chan struct{})}
}

// report keeps data as the latest progress and has it written soon.
func (g *progress) report(data []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return
	}
	g.latest = data
	if !g.started {
		g.started = true
		g.wg.Go(g.write)
	}
	g.nudge()
}

// goLive says the record now says running, and has what was reported
// before written.
func (g *progress) goLive() {
	g.mu.Lock()
	g.live = true
	g.mu.Unlock()
	g.nudge()
}

// nudge has the latest progress written, if there is any to write.
func (g *progress) nudge() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// last is the latest progress reported, nil if none.
func (g *progress) last() []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.latest
}

// pending is the progress to write now, if any.
func (g *progress) pending(written []byte) ([]byte, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.latest, g.live && !bytes.Equal(g.latest, written)
}

// stop ends the writer once the handler has returned; what it reported last
// is then written with the attempt's outcome.
func (g *progress) stop() {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
	close(g.done)
	g.wg.Wait()
}

func (g *progress) write() {
	var written []byte
	for {
		select {
		case <-g.done:
			return
		default:
		}
		select {
		case <-g.kick:
		case <-g.done:
			return
		}
		data, ok := g.pending(written)
		if !ok {
			continue // nothing new, or not live yet: wait for the next kick
		}
		if g.store(data) {
			written = data
		} else {
			g.nudge() // again after the wait
		}
		select {
		case <-time.After(g.every):
		case <-g.done:
			return
		}
	}
}

// store writes data as the record's progress while it says running; false
// when it should be tried again.
func (g *progress) store(data []byte) bool {
	ctx, cancel := context.WithTimeout(context.Background(), storeRetry)
	defer cancel()
	_, err := g.p.jobs.Update(ctx, g.id, func(r *contract.JobRecord) error {
		if r.Status != contract.StatusRunning {
			return jobstore.ErrUnchanged
		}
		r.Progress, r.UpdatedAt = contract.ValidUTF8(data), g.p.now().UTC()
		return nil
	})
	switch {
	case err == nil || errors.Is(err, jobstore.ErrUnchanged) || errors.Is(err, jobstore.ErrNotFound):
		return true // written, or nothing left to write it to
	default:
		g.p.logger.Debug("write job progress", "job_id", g.id, "error", err)
		return false
	}
}
