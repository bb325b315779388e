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

// progressEvery is the most often a running job's progress is written to
// its record.
const progressEvery = time.Second

// progress keeps the latest progress a handler reported for one attempt and
// writes it to the job's record, at most every progressEvery and only while
// the record says running: a job done within RunningAfter has no running
// record, and its last report is written with its result instead.
type progress struct {
	p    *Processor
	id   string
	kick chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once // starts the writer at the first report

	mu     sync.Mutex
	latest []byte
}

func (p *Processor) newProgress(id string) *progress {
	return &progress{p: p, id: id, kick: make(chan struct{}, 1), done: make(chan struct{})}
}

// report keeps data as the latest progress and has it written soon.
func (g *progress) report(data []byte) {
	g.mu.Lock()
	g.latest = data
	g.mu.Unlock()
	g.once.Do(func() { g.wg.Go(g.write) })
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

// stop ends the writer once the handler has returned; what it reported last
// is then written with the attempt's outcome.
func (g *progress) stop() {
	close(g.done)
	g.wg.Wait()
}

func (g *progress) write() {
	var written []byte
	for {
		select {
		case <-g.kick:
		case <-g.done:
			return
		}
		if data := g.last(); !bytes.Equal(data, written) {
			ctx, cancel := context.WithTimeout(context.Background(), storeRetry)
			_, err := g.p.jobs.Update(ctx, g.id, func(r *contract.JobRecord) error {
				if r.Status != contract.StatusRunning {
					return jobstore.ErrUnchanged
				}
				r.Progress, r.UpdatedAt = data, g.p.now().UTC()
				return nil
			})
			cancel()
			switch {
			case err == nil:
				written = data
			case !errors.Is(err, jobstore.ErrUnchanged) && !errors.Is(err, jobstore.ErrNotFound):
				g.p.logger.Debug("write job progress", "job_id", g.id, "error", err)
			}
		}
		select {
		case <-time.After(progressEvery):
		case <-g.done:
			return
		}
	}
}
