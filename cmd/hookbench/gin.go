package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// jobRequest is what the gin baseline decodes: the same body as intake's.
type jobRequest struct {
	Type        string            `json:"type"`
	Payload     json.RawMessage   `json:"payload"`
	CallbackURL string            `json:"callback_url,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
}

// ginHandler is the baseline: a bare Gin handler that parses the job body
// the way intake does and answers 202.
func ginHandler() http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.POST("/v1/jobs", func(c *gin.Context) {
		var req jobRequest
		dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil || req.Type == "" {
			c.JSON(http.StatusBadRequest, gin.H{"detail": "bad request"})
			return
		}
		c.Header("Location", "/v1/jobs/job_x")
		c.JSON(http.StatusAccepted, gin.H{"id": "job_x", "status": "queued", "type": req.Type})
	})
	return r
}

// ginBaseline loads the bare Gin handler like intakeScenario. By default
// the handler runs in a process of its own (`hookbench gin-serve`), as
// hookstream's server does, and its CPU and RSS are reported. With
// inProcess it runs inside hookbench, sharing one Go runtime with the load
// generator: on 2 cores that served about 20 % more requests a second
// than the same handler in its own process (docs/performance.md, finding
// 14), so it flatters the baseline.
func ginBaseline(ctx context.Context, o options, inProcess bool) (report, error) {
	if inProcess {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return report{}, err
		}
		srv := &http.Server{Handler: ginHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		o.url, o.pid = "http://"+ln.Addr().String(), os.Getpid()
		rep := intakeScenario(ctx, o)
		rep.Scenario = "baseline: bare Gin 202, in hookbench's process"
		rep.Server = nil // hookbench's own CPU and memory, the load generator's too
		return rep, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return report{}, err
	}
	cmd := exec.CommandContext(ctx, exe, "gin-serve", "-listen", "127.0.0.1:0")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return report{}, err
	}
	if err := cmd.Start(); err != nil {
		return report{}, fmt.Errorf("start the gin baseline: %w", err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return report{}, fmt.Errorf("the gin baseline did not start: %w", err)
	}
	o.url, o.pid = strings.TrimSpace(line), cmd.Process.Pid
	rep := intakeScenario(ctx, o)
	rep.Scenario = "baseline: bare Gin 202"
	return rep, nil
}

// serveGin is `hookbench gin-serve`: it serves the baseline's handler on
// listen, prints its URL on a line of its own, and serves until ctx ends.
func serveGin(ctx context.Context, listen string, stdout io.Writer) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: ginHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	fmt.Fprintf(stdout, "http://%s\n", ln.Addr())
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}
