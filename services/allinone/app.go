// Package allinone runs hookstream in one process: an embedded nats-server
// with JetStream storing under the data dir, and the intake, processor and
// notifier services on an in-process connection. It is the default mode of
// the hookstream binary and the harness of the end-to-end tests.
package allinone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/hookstream/hookstream/services/intake"
	"github.com/hookstream/hookstream/services/notifier"
	"github.com/hookstream/hookstream/services/processor"
	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/deliverylog"
	"github.com/hookstream/hookstream/shared/embeddednats"
	"github.com/hookstream/hookstream/shared/secretbox"
	"github.com/hookstream/hookstream/shared/signing"
)

// Config configures the all-in-one process.
type Config struct {
	// DataDir holds JetStream's files (DataDir/jetstream). Required.
	DataDir string
	// NATSListen, when set, also exposes the embedded NATS on this address
	// for internal publishers. Default: in-process only.
	NATSListen string
	// NATSToken is the token every NATS client must give when NATSListen is
	// set. Default: generated on first start and kept in
	// DataDir/nats-token (NATSTokenFile).
	NATSToken string
	// SyncAlways syncs every JetStream write to disk before acknowledging it
	// (the default in hookstream). When false, SyncInterval applies.
	SyncAlways bool
	// SyncInterval is the disk sync interval when SyncAlways is false; zero
	// is the NATS default of 2 minutes.
	SyncInterval time.Duration
	// SecretKey encrypts signing secrets at rest (32 bytes). Default: a key
	// generated on first start and kept in DataDir/secret-key.
	SecretKey []byte
	// Topology sizes the streams and buckets.
	Topology bus.Topology
	// Intake, Processor and Notifier configure the three services.
	Intake    intake.Config
	Processor processor.Config
	Notifier  notifier.Config
	// NoProcessor runs intake and notifier without a processor: jobs wait
	// in JetStream for `hookstream processor` processes connected through
	// NATSListen (or for one started later). Default false.
	NoProcessor bool
	// ReplaceSecretKey records this process's secret key as the
	// deployment's at start (signing.CheckKey), in place of the recorded
	// one. Default false: another key than the recorded one is an error.
	ReplaceSecretKey bool
}

// App is a configured all-in-one process.
type App struct {
	cfg    Config
	logger *slog.Logger
	ready  chan struct{}

	mu       sync.Mutex
	httpAddr string
	natsURL  string
	check    func(context.Context) error // Check's, once built
}

// New returns an app; Run starts it.
func New(cfg Config, logger *slog.Logger) *App {
	return &App{cfg: cfg, logger: logger, ready: make(chan struct{})}
}

// Run starts hookstream in this process and blocks until ctx ends; then it
// stops taking HTTP requests, drains the consumers, closes the connection
// and stops the embedded server, in that order.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	return New(cfg, logger).Run(ctx)
}

// Ready is closed once every service runs.
func (a *App) Ready() <-chan struct{} { return a.ready }

// Check tells why the app does not work yet, or nil: it is starting (a
// service does not run yet: intake loads its API keys, the notifier its
// endpoints), or JetStream does not answer.
func (a *App) Check(ctx context.Context) error {
	a.mu.Lock()
	check := a.check
	a.mu.Unlock()
	if check == nil {
		return errors.New("starting")
	}
	return check(ctx)
}

// HTTPAddr is the address intake listens on, once Ready.
func (a *App) HTTPAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.httpAddr
}

// NATSURL is the embedded server's client URL when NATSListen is set, once
// Ready, with its token (nats://<token>@host:port).
func (a *App) NATSURL() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.natsURL
}

// Run implements the package-level Run.
func (a *App) Run(ctx context.Context) error {
	if a.cfg.DataDir == "" {
		return errors.New("DataDir: required")
	}
	unlock, err := lockDataDir(a.cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	if err := a.useSecretKey(); err != nil {
		return err
	}
	token, err := a.natsToken()
	if err != nil {
		return err
	}
	ns, err := embeddednats.Start(embeddednats.Config{
		StoreDir: filepath.Join(a.cfg.DataDir, "jetstream"), Listen: a.cfg.NATSListen, Token: token,
		SyncAlways: a.cfg.SyncAlways, SyncInterval: a.cfg.SyncInterval,
	}, a.logger)
	if err != nil {
		return err
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	nc, js, err := bus.Connect(bus.ConnectOptions{InProcess: ns, Name: "hookstream", Token: token}, a.logger)
	if err != nil {
		return err
	}
	defer nc.Close()
	bus.StopWhenClosed(ctx, nc, a.logger, stop)
	if err := bus.Ensure(ctx, js, a.cfg.Topology); err != nil {
		return err
	}
	if err := signing.CheckKey(ctx, js, a.cfg.Intake.Box, a.cfg.ReplaceSecretKey); err != nil {
		return a.keyError(err)
	}
	if err := deliverylog.MarkKeys(ctx, js); err != nil {
		a.logger.Warn("reads of the delivery log keep looking for records of its keys from before this version", "error", err)
	}
	go func() { // a processor of its own, connected over NATS, may replace it
		err := signing.WatchKey(ctx, js, a.cfg.Intake.Box, a.logger, func(err error) {
			a.logger.Error("stopping: the secret key was replaced by another service; restart with the new key", "error", err)
			stop(fmt.Errorf("the deployment's secret key was replaced by another service (HOOKSTREAM_SECRET_KEY_REPLACE=yes); restart with its new key in HOOKSTREAM_SECRET_KEY: %w", err))
		})
		if err != nil && ctx.Err() == nil {
			a.logger.Warn("the secret key's record is not watched", "error", err)
		}
	}()
	// Job records are read on a connection of their own (finding 21 of
	// docs/performance.md): such a read waits while nats-server saves the
	// records' index, and on nc it held every write after it.
	rnc, rjs, err := bus.Connect(bus.ConnectOptions{InProcess: ns, Name: "hookstream-records", Token: token}, a.logger)
	if err != nil {
		return err
	}
	defer rnc.Close()
	bus.StopWhenClosed(ctx, rnc, a.logger, stop)
	if a.cfg.Intake.RecordReader == nil {
		a.cfg.Intake.RecordReader = rjs
	}
	if a.cfg.Processor.RecordReader == nil {
		a.cfg.Processor.RecordReader = rjs
	}
	services, err := a.build(ctx, nc, ns, token)
	if err != nil {
		return err
	}
	defer drainConn(nc)
	warnOpenKeyFiles(a.logger, a.cfg.DataDir)
	err = runInOrder(ctx, services)
	if cause := context.Cause(ctx); errors.Is(cause, bus.ErrConnectionLost) || errors.Is(cause, signing.ErrKeyMismatch) {
		return cause
	}
	return err
}

// keyError says which key CheckKey refused, and what to do about it.
func (a *App) keyError(err error) error {
	if a.cfg.SecretKey != nil {
		return fmt.Errorf("HOOKSTREAM_SECRET_KEY: %w; start with the deployment's key (HOOKSTREAM_SECRET_KEY_REPLACE=yes records this one instead)", err)
	}
	return fmt.Errorf("the key in %s: %w; restore that file from a backup of the data dir, or set HOOKSTREAM_SECRET_KEY to the deployment's key (HOOKSTREAM_SECRET_KEY_REPLACE=yes records this one instead)",
		filepath.Join(a.cfg.DataDir, "secret-key"), err)
}

// natsToken is the token NATS clients give when the embedded server
// listens: the configured one, or the one kept in the data dir. None
// without a listener, where only this process connects.
func (a *App) natsToken() (string, error) {
	switch {
	case a.cfg.NATSListen == "":
		return "", nil
	case a.cfg.NATSToken != "":
		return a.cfg.NATSToken, nil
	}
	token, created, err := keptSecret(a.cfg.DataDir, NATSTokenFile, "")
	if err == nil && created {
		a.logger.Info("NATS clients of the embedded server authenticate with a token, generated and kept in the data dir",
			"file", filepath.Join(a.cfg.DataDir, NATSTokenFile))
	}
	return token, err
}

// useSecretKey gives intake and notifier the box that seals secrets.
func (a *App) useSecretKey() error {
	key := a.cfg.SecretKey
	if key == nil {
		var err error
		if key, err = secretbox.KeyFile(a.cfg.DataDir); err != nil {
			return err
		}
	}
	box, err := secretbox.New(key)
	if err != nil {
		return err
	}
	a.cfg.Intake.Box, a.cfg.Notifier.Box, a.cfg.Processor.Box = box, box, box
	return nil
}

// build makes the services, intake first, and the processor unless
// NoProcessor. When one fails, those already made are closed.
func (a *App) build(ctx context.Context, nc *nats.Conn, ns *server.Server, token string) (_ []runner, err error) {
	js, err := bus.JetStream(nc)
	if err != nil {
		return nil, err
	}
	var made []interface{ Close() }
	defer func() {
		if err != nil {
			for _, m := range made {
				m.Close()
			}
		}
	}()
	var parts []runner
	if !a.cfg.NoProcessor {
		proc, err := processor.New(ctx, a.cfg.Processor, js, a.logger)
		if err != nil {
			return nil, err
		}
		made = append(made, proc)
		parts = append(parts, proc)
	}
	notif, err := notifier.New(ctx, a.cfg.Notifier, js, a.logger)
	if err != nil {
		return nil, err
	}
	made = append(made, notif)
	icfg := a.cfg.Intake
	if icfg.RetrySchedule == nil {
		icfg.RetrySchedule = a.cfg.Notifier.WithDefaults().Schedule
	}
	if icfg.Listener == nil {
		addr := icfg.Addr
		if addr == "" {
			addr = intake.DefaultAddr
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		icfg.Listener = ln
	}
	in, err := intake.New(ctx, icfg, nc, js, a.logger)
	if err != nil {
		_ = icfg.Listener.Close()
		return nil, err
	}
	a.mu.Lock()
	a.check = func(ctx context.Context) error {
		for _, ready := range []<-chan struct{}{in.Ready(), notif.Ready()} {
			select {
			case <-ready:
			default:
				return errors.New("starting")
			}
		}
		return bus.CheckAvailable(ctx, js, contract.StreamJobs)
	}
	a.httpAddr = icfg.Listener.Addr().String()
	if a.cfg.NATSListen != "" {
		a.natsURL = strings.Replace(ns.ClientURL(), "://", "://"+token+"@", 1)
	}
	a.mu.Unlock()
	close(a.ready)
	return append(append([]runner{in}, parts...), notif, newKeyWatch(js, a.logger)), nil
}

// runner is a long-running part.
type runner interface {
	Run(ctx context.Context) error
}

// runInOrder runs every part until ctx ends or one fails, then stops them in
// the order given, each after the previous one has returned.
func runInOrder(ctx context.Context, parts []runner) error {
	ctx, fail := context.WithCancel(ctx)
	defer fail()
	stops := make([]context.CancelFunc, len(parts))
	dones := make([]chan error, len(parts))
	for i, p := range parts {
		var partCtx context.Context
		partCtx, stops[i] = context.WithCancel(context.WithoutCancel(ctx))
		dones[i] = make(chan error, 1)
		go func() {
			err := p.Run(partCtx)
			if err != nil {
				fail()
			}
			dones[i] <- err
		}()
	}
	<-ctx.Done()
	var errs []error
	for i := range parts {
		stops[i]()
		errs = append(errs, <-dones[i])
	}
	return errors.Join(errs...)
}

func drainConn(nc *nats.Conn) {
	done := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(done) })
	if err := nc.Drain(); err != nil {
		return
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}
