package intake

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/jobstore"
)

// sseKeepAlive is how often an idle event stream sends a comment, so that
// proxies keep it open.
const sseKeepAlive = 15 * time.Second

// jobEvents answers GET /v1/jobs/{id}/events: a text/event-stream of the
// job's status changes, for browsers that cannot receive webhooks. Each
// event is "event: job.<status>" with the job resource as data; the stream
// ends after the terminal status, or after MaxWait×5 at the most.
func (s *Service) jobEvents(c *gin.Context) {
	ctx := c.Request.Context()
	rec, rev, err := s.findJob(ctx, tenantOf(c), c.Param("id"))
	if err != nil {
		s.respondError(c, err)
		return
	}
	done, ok := s.waits.start(tenantOf(c))
	if !ok {
		s.tooManyWaits(c)
		return
	}
	defer done()
	// The server's write timeout is sized for long-polls; a stream lives longer.
	_ = http.NewResponseController(c.Writer).SetWriteDeadline(time.Now().Add(5*s.cfg.MaxWait + 10*time.Second))
	c.Header("Content-Type", "text/event-stream")
	c.Header("Cache-Control", "no-store")
	c.Header("X-Accel-Buffering", "no")
	c.Status(http.StatusOK)
	deadline, cancel := context.WithTimeout(ctx, 5*s.cfg.MaxWait)
	defer cancel()
	defer context.AfterFunc(s.stopping, cancel)()
	c.Stream(func(w io.Writer) bool {
		if err := writeJobEvent(w, rec.Job); err != nil || contract.Terminal(rec.Status) {
			return false
		}
		c.Writer.Flush()
		for {
			waitCtx, stop := context.WithTimeout(deadline, sseKeepAlive)
			latest, cur, err := s.jobs.WaitChange(waitCtx, rec.ID, rev)
			stop()
			if rev == 0 && errors.Is(err, jobstore.ErrNotFound) {
				err = nil // no record yet: unchanged
			}
			if err != nil || deadline.Err() != nil {
				return false
			}
			if cur > rev { // not an earlier revision, from a replica behind
				unchanged := sameView(rec, latest)
				rec, rev = latest, cur
				if unchanged {
					continue
				}
				return true // the next call writes it
			}
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return false
			}
			c.Writer.Flush()
		}
	})
}

func writeJobEvent(w io.Writer, job contract.Job) error {
	data, err := json.Marshal(job)
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, "event: job."+job.Status+"\ndata: "+string(data)+"\n\n")
	return err
}
