package intake

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/apikeys"
	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/endpoints"
	"github.com/hookstream/hookstream/shared/jobstore"
	"github.com/hookstream/hookstream/shared/metrics"
	"github.com/hookstream/hookstream/shared/signing"
)

// Service is the intake HTTP API.
type Service struct {
	cfg    Config
	logger *slog.Logger
	nc     *nats.Conn
	js     jetstream.JetStream
	// pub writes jobs, events and deliveries in group commits.
	pub       *bus.GroupCommit
	jobs      *jobstore.Store
	secrets   *signing.Store
	tenants   jetstream.KeyValue
	endpoints *endpoints.Store
	// keyPrunes is when each tenant's endpoint keys were last pruned.
	keyPrunes struct {
		sync.Mutex
		last map[string]time.Time
	}
	// admittingTasks lets one recover task at a time be counted and
	// queued: a key-value read misses a key written while it reads (the
	// new value comes after the read's end), so two tasks queued at once
	// could each miss the other.
	admittingTasks sync.Mutex
	apiKeys        *apikeys.Index
	admission      *admission
	waits          *waits
	keys           map[[sha256.Size]byte]string
	jobTypes       map[string]bool
	// external are the job types whose record is written at submit.
	external map[string]bool
	// batcher writes the jobs stored as their message alone.
	batcher *jobBatcher
	// jobsStream reads job messages whose record is not written yet.
	jobsStream jetstream.Stream
	// eventsStream reads the event first published with an id used again.
	eventsStream jetstream.Stream
	// parkedStream counts the deliveries parked for endpoints (parked).
	parkedStream jetstream.Stream
	// retryAfter is the Retry-After header of a 202; net/http only reads it.
	retryAfter []string
	handler    http.Handler
	now        func() time.Time
	// stopping ends when the HTTP server starts shutting down: long-polls
	// and event streams end then, so that shutdown does not wait for them.
	stopping    context.Context
	stopWaiting context.CancelFunc
	// serving is closed once Run serves requests.
	serving chan struct{}
	// maxPayload is the NATS server's largest message in bytes.
	maxPayload int64
	// deliveryRetention is how long the deliveries stream keeps a message
	// (a pending retry), as read at start; zero: no limit.
	deliveryRetention time.Duration
	// eventDuplicates is the events stream's de-duplication window, as
	// read at start.
	eventDuplicates time.Duration
}

// maxPayloadHeadroom is what a job's record adds to its payload, callback
// URL and metadata, at most, with room for a short result: a job whose
// record would not fit the NATS server's largest message answers 413.
const maxPayloadHeadroom = 4096

// New builds the service on a connection whose streams and buckets exist
// (bus.Ensure).
func New(ctx context.Context, cfg Config, nc *nats.Conn, js jetstream.JetStream, logger *slog.Logger) (_ *Service, err error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("intake config: %w", err)
	}
	if most := nc.MaxPayload(); most > 0 && cfg.MaxBodyBytes > most-maxPayloadHeadroom {
		logger.Warn("requests up to HOOKSTREAM_MAX_BODY_BYTES may not fit a NATS message: jobs that do not answer 413",
			"max_body_bytes", cfg.MaxBodyBytes, "nats_max_payload", most)
	}
	pub := bus.NewGroupCommit(js, cfg.GroupCommit)
	defer func() {
		if err != nil {
			pub.Close()
		}
	}()
	jobs, err := jobstore.Open(ctx, cmp.Or(cfg.RecordReader, js), pub)
	if err != nil {
		return nil, err
	}
	secrets, err := signing.Open(ctx, js, cfg.Box)
	if err != nil {
		return nil, err
	}
	if _, err := js.KeyValue(ctx, contract.BucketDeliveries); err != nil { // read with deliverylog
		return nil, fmt.Errorf("open bucket %s: %w", contract.BucketDeliveries, err)
	}
	tenants, err := js.KeyValue(ctx, contract.BucketTenants)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", contract.BucketTenants, err)
	}
	eps, err := endpoints.Open(ctx, js, cfg.Box)
	if err != nil {
		return nil, err
	}
	keys, err := apikeys.NewIndex(ctx, js, logger)
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg: cfg, logger: logger.With("service", "intake"), nc: nc, js: js, pub: pub, jobs: jobs, secrets: secrets,
		tenants: tenants, endpoints: eps, apiKeys: keys, admission: newAdmission(cfg.MaxInflight, cfg.TenantRate, time.Now),
		waits: &waits{most: cfg.MaxWaitsPerTenant, open: map[string]int{}},
		keys:  cfg.keyIndex(), jobTypes: map[string]bool{}, now: time.Now, batcher: newJobBatcher(pub, cfg.PublishTimeout, cfg.JobBatches, nc.MaxPayload()),
		retryAfter: []string{retryAfterValue(cfg.RetryAfter)}, serving: make(chan struct{}), maxPayload: nc.MaxPayload(),
	}
	for _, t := range cfg.JobTypes {
		s.jobTypes[t] = true
	}
	s.external = map[string]bool{}
	for _, t := range cfg.ExternalJobTypes {
		s.external[t] = true
	}
	if s.jobsStream, err = js.Stream(ctx, contract.StreamJobs); err != nil {
		return nil, fmt.Errorf("open stream %s: %w", contract.StreamJobs, err)
	}
	deliveries, err := js.Stream(ctx, contract.StreamDeliveries)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", contract.StreamDeliveries, err)
	}
	s.deliveryRetention = deliveries.CachedInfo().Config.MaxAge
	events, err := js.Stream(ctx, contract.StreamEvents)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", contract.StreamEvents, err)
	}
	s.eventsStream = events
	parked, err := js.Stream(ctx, contract.StreamParked)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", contract.StreamParked, err)
	}
	s.parkedStream = parked
	s.eventDuplicates = events.CachedInfo().Config.Duplicates
	s.stopping, s.stopWaiting = context.WithCancel(context.Background())
	s.handler = s.routes()
	return s, nil
}

// Ready is closed once Run serves requests: its API-key index is loaded
// and its bootstrap tenants registered.
func (s *Service) Ready() <-chan struct{} { return s.serving }

// Handler returns the HTTP handler, for tests and benchmarks.
func (s *Service) Handler() http.Handler { return s.handler }

func init() { gin.SetMode(gin.ReleaseMode) }

func (s *Service) routes() http.Handler {
	r := gin.New()
	r.Use(s.recoverer, countResponses, s.checkQuery)
	r.HandleMethodNotAllowed = true
	// A trailing slash is not a route: gin would redirect, in HTML and
	// before the key is checked, and a client following a 307 POSTs again.
	r.RedirectTrailingSlash = false
	r.NoRoute(func(c *gin.Context) { writeProblem(c, http.StatusNotFound, "not-found", "no such route") })
	r.NoMethod(func(c *gin.Context) {
		writeProblem(c, http.StatusMethodNotAllowed, "method-not-allowed", "method not allowed on this route")
	})
	ops := map[string]gin.HandlerFunc{
		"/healthz": s.healthz, "/readyz": s.readyz, "/openapi.json": serveOpenAPI,
		"/metrics": func(c *gin.Context) {
			c.Header("Content-Type", "text/plain; version=0.0.4")
			metrics.WriteTo(c.Writer)
		},
	}
	for path, handle := range ops {
		r.GET(path, handle)
		r.HEAD(path, handle) // uptime checkers ask with HEAD; net/http drops the body
	}

	v1 := r.Group("/v1", s.authenticate)
	// Every write takes the tenant's rate and a place among the writes in
	// flight (admit): a test ping or a retry by hand is a stored delivery
	// and a webhook sent, as an event is.
	v1.POST("/jobs", s.admit, s.createJob)
	v1.GET("/jobs/:id", s.getJob)
	v1.DELETE("/jobs/:id", s.admit, s.cancelJob)
	v1.GET("/jobs/:id/deliveries", s.listDeliveries)
	v1.GET("/jobs/:id/events", s.jobEvents)
	v1.GET("/signing-secret", s.getSigningSecret)
	v1.POST("/signing-secret/rotate", s.admit, s.rotateSigningSecret)
	v1.POST("/events", s.admit, s.publishEvent)
	v1.GET("/event-types", s.listEventTypes)
	v1.POST("/endpoints", s.admit, s.createEndpoint)
	v1.GET("/endpoints", s.listEndpoints)
	v1.GET("/endpoints/:id", s.getEndpoint)
	v1.PATCH("/endpoints/:id", s.admit, s.patchEndpoint)
	v1.DELETE("/endpoints/:id", s.admit, s.deleteEndpoint)
	v1.GET("/endpoints/:id/secret", s.getEndpointSecret)
	v1.POST("/endpoints/:id/secret/rotate", s.admit, s.rotateEndpointSecret)
	v1.POST("/endpoints/:id/test", s.admit, s.testEndpoint)
	v1.POST("/endpoints/:id/recover", s.admit, s.recoverEndpoint)
	v1.GET("/deliveries", s.listTenantDeliveries)
	v1.GET("/deliveries/:id", s.getDelivery)
	v1.POST("/deliveries/:id/retry", s.admit, s.retryDelivery)
	v1.GET("/tasks/:id", s.getTask)

	admin := r.Group("/v1/admin", s.authenticateAdmin)
	admin.POST("/tenants", s.createTenant)
	admin.GET("/tenants", s.listTenants)
	admin.GET("/tenants/:tenant", s.getTenant)
	admin.DELETE("/tenants/:tenant", s.deleteTenant)
	admin.POST("/tenants/:tenant/keys", s.issueKey)
	admin.GET("/tenants/:tenant/keys", s.listKeys)
	admin.DELETE("/tenants/:tenant/keys/:key", s.revokeKey)
	return r
}

// checkQuery answers 400 for a query string that does not parse (a bad
// escape, a ';' separator), whose parameters would otherwise be dropped
// unseen: a page cursor or a filter left out.
func (s *Service) checkQuery(c *gin.Context) {
	if q := c.Request.URL.RawQuery; q != "" {
		if _, err := url.ParseQuery(q); err != nil {
			s.respondError(c, badRequest("malformed query string: "+err.Error()))
			c.Abort()
			return
		}
	}
	c.Next()
}

// countResponses counts every answer by status code.
func countResponses(c *gin.Context) {
	c.Next()
	metrics.HTTPResponses.Inc(strconv.Itoa(c.Writer.Status()))
}

// recoverer turns a panic in a handler into a logged 500, never a dropped
// connection.
func (s *Service) recoverer(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			s.logger.Error("handler panic", "path", c.FullPath(), "panic", fmt.Sprint(v))
			s.respondError(c, unavailable(s.cfg.RetryAfter)) // unforeseen: 503, as any other
		}
	}()
	c.Next()
}

// Run serves HTTP until ctx ends, then shuts down gracefully within 10 s.
func (s *Service) Run(ctx context.Context) error {
	defer s.pub.Close()
	ln := s.cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.Addr); err != nil {
			return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
		}
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      s.cfg.MaxWait + 30*time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	keysCtx, stopKeys := context.WithCancel(context.WithoutCancel(ctx))
	defer stopKeys()
	keysDone := make(chan error, 1)
	go func() { keysDone <- s.apiKeys.Run(keysCtx) }()
	go func() { // GET /v1/signing-secret shows another intake's rotation at once
		if err := s.secrets.Watch(keysCtx, s.logger); err != nil {
			s.logger.Warn("signing secrets not watched: a rotation by another intake is seen within the cache's 5 s", "error", err)
		}
	}()
	select { // issued API keys must work from the first request
	case <-s.apiKeys.Ready():
	case err := <-keysDone:
		return fmt.Errorf("api key index: %w", err)
	case <-ctx.Done():
		return nil
	}
	if err := s.registerBootstrapTenants(ctx); err != nil {
		if ctx.Err() != nil { // stopped while starting: not a failure
			return nil
		}
		return err
	}
	srv.RegisterOnShutdown(s.stopWaiting)
	s.logger.Info("intake listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	close(s.serving)
	var stopped error // why intake stops before ctx ends
	select {
	case err := <-errc:
		return fmt.Errorf("serve http: %w", err)
	case err := <-keysDone: // its bucket is gone: keys can no longer be checked
		stopped = fmt.Errorf("api key index: %w", err)
		s.logger.Error("stopping", "error", stopped)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return errors.Join(stopped, fmt.Errorf("shut down http: %w", err))
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return errors.Join(stopped, fmt.Errorf("serve http: %w", err))
	}
	return stopped
}

// publishContext bounds a request's wait for JetStream.
func (s *Service) publishContext(c *gin.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Request.Context(), s.cfg.PublishTimeout)
}

func (s *Service) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

// readyz answers 200 when JetStream answers, 503 otherwise.
func (s *Service) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	var records []*nats.Conn
	if s.cfg.RecordReader != nil {
		records = append(records, s.cfg.RecordReader.Conn())
	}
	if err := bus.CheckAvailable(ctx, s.js, contract.StreamJobs, records...); err != nil {
		s.respondError(c, unavailable(s.cfg.RetryAfter))
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}
