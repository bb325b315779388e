package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/services/allinone"
	"github.com/hookstream/hookstream/services/intake"
	"github.com/hookstream/hookstream/services/notifier"
	"github.com/hookstream/hookstream/services/processor"
	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/deliverylog"
	"github.com/hookstream/hookstream/shared/secretbox"
	"github.com/hookstream/hookstream/shared/signing"
	"github.com/hookstream/hookstream/shared/ssrf"
)

// configs are the services' configs built from the settings.
type configs struct {
	topology  bus.Topology
	intake    intake.Config
	processor processor.Config
	notifier  notifier.Config
	// noProcessor: serve runs no processor (HOOKSTREAM_PROCESSOR_CONCURRENCY=0).
	noProcessor bool
}

func buildConfigs(cmd string, s *settings) (configs, error) {
	keys, err := s.apiKeys()
	if err != nil {
		return configs{}, err
	}
	allowed, err := ssrf.ParseNetworks(s.AllowedNetworks)
	if err != nil {
		return configs{}, err
	}
	workers, err := s.workers()
	if err != nil {
		return configs{}, err
	}
	schedule, err := s.schedule()
	if err != nil {
		return configs{}, err
	}
	guard := ssrf.NewGuard(allowed)
	handlers := map[string]processor.Handler{"echo": processor.Echo}
	for t, w := range workers {
		handlers[t] = w
	}
	proc := processor.Config{
		Handlers: handlers, Concurrency: s.JobConcurrency, MaxAttempts: s.JobMaxAttempts, JobRetention: s.JobRetention,
		GroupCommit: s.groupCommit(cmd),
	}
	jobTypes := append(processorTypes(handlers), splitList(s.ExternalTypes)...)
	return configs{
		topology: bus.Topology{Replicas: s.Replicas, StreamMaxBytes: s.StreamMaxBytes, JobRetention: s.JobRetention, DeliveryRetention: s.DeliveryRetention},
		intake: intake.Config{
			Addr: s.HTTPAddr, APIKeys: keys, AdminToken: s.AdminToken, MaxInflight: s.MaxInflight, MaxWaitsPerTenant: s.MaxWaits, MaxEndpointsPerTenant: s.MaxEndpoints, TenantRate: s.TenantRate, JobTypes: jobTypes, ExternalJobTypes: splitList(s.ExternalTypes), Guard: guard,
			MaxBodyBytes: s.MaxBodyBytes, MaxJSONDepth: s.MaxJSONDepth, JobRetention: s.JobRetention,
			GroupCommit: s.groupCommit(cmd), JobBatches: s.jobBatches(cmd), RetrySchedule: schedule,
		},
		processor: proc, noProcessor: s.JobConcurrency == 0,
		notifier: notifier.Config{
			Guard: guard, Schedule: schedule, AttemptTimeout: s.AttemptTimeout, Concurrency: s.NotifyConc,
			EndpointConcurrency: s.EndpointConc, ParkRate: s.ParkRate, DisableAfter: s.DisableAfter, GroupCommit: s.groupCommit(cmd),
		},
	}, nil
}

func processorTypes(h map[string]processor.Handler) []string {
	out := make([]string, 0, len(h))
	for t := range h {
		out = append(out, t)
	}
	return out
}

// start runs the chosen mode until ctx ends.
func start(ctx context.Context, cmd string, s *settings, getenv func(string) string, logger *slog.Logger, stdout io.Writer) error {
	c, err := buildConfigs(cmd, s)
	if err != nil {
		return err
	}
	setMemoryLimit(s, getenv, availableMemory, logger)
	if s.PprofAddr != "" {
		if err := servePprof(ctx, s.PprofAddr, logger); err != nil {
			return err
		}
	}
	if cmd == "serve" {
		return serve(ctx, s, c, logger, stdout)
	}
	key, _ := secretbox.ParseKey(s.SecretKey) // validated with the settings (validateSplit)
	box, err := secretbox.New(key)
	if err != nil {
		return err
	}
	c.intake.Box, c.notifier.Box, c.processor.Box = box, box, box
	readiness := newSplitReadiness(cmd)
	if s.OpsAddr != "" {
		stopOps, err := serveOps(ctx, s.OpsAddr, readiness.check, logger)
		if err != nil {
			return err
		}
		defer stopOps()
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var nc *nats.Conn
	var js jetstream.JetStream
	until := time.Now().Add(startupWait) // for every step of the start
	err = whenAvailable(ctx, logger, until, "connect to NATS", func() (err error) {
		nc, js, err = bus.Connect(s.natsConnectOptions("hookstream-"+cmd), logger)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Connected, and then no NATS greeting: another kind of server.
			return fmt.Errorf("%w (nothing answered as a NATS server does: is HOOKSTREAM_NATS_URL the client port of a NATS server?)", err)
		}
		return err
	})
	if err != nil {
		return err
	}
	defer nc.Close()
	bus.StopWhenClosed(ctx, nc, logger, stop)
	readiness.connected(js)
	// Each service of a split deployment ensures the topology: one started
	// with other settings than the rest must not lower them for all.
	topology := c.topology
	topology.KeepHigher = true
	topology.Kept = func(what string) {
		logger.Warn("streams and buckets: " + what + "; lower it with the nats CLI if that is meant (give every service the same HOOKSTREAM_NATS_REPLICAS, retentions and HOOKSTREAM_STREAM_MAX_BYTES)")
	}
	if err := whenAvailable(ctx, logger, until, "create streams and buckets", func() error { return bus.Ensure(ctx, js, topology) }); err != nil {
		return err
	}
	if err := whenAvailable(ctx, logger, until, "check the secret key", func() error {
		return signing.CheckKey(ctx, js, box, s.SecretKeyReplace == "yes")
	}); err != nil {
		return fmt.Errorf("HOOKSTREAM_SECRET_KEY (--secret-key): %w; give every service the same key (HOOKSTREAM_SECRET_KEY_REPLACE=yes records a new one)", err)
	}
	if cmd == "intake" || cmd == "notifier" { // the services that read the delivery log
		if err := deliverylog.MarkKeys(ctx, js); err != nil {
			logger.Warn("reads of the delivery log keep looking for records of its keys from before this version (allow this service's NATS user $KV.HOOKSTREAM_TENANTS."+contract.KeyDeliveryLogKeys+")", "error", err)
		}
	}
	go func() {
		err := signing.WatchKey(ctx, js, box, logger, func(err error) {
			logger.Error("stopping: HOOKSTREAM_SECRET_KEY was replaced; restart this service with the new key", "error", err)
			stop(fmt.Errorf("HOOKSTREAM_SECRET_KEY (--secret-key): %w", err))
		})
		if err != nil && ctx.Err() == nil {
			logger.Warn("the secret key's record is not watched: a replacement by another service goes unnoticed until this one restarts", "error", err)
		}
	}()
	if cmd == "intake" || cmd == "processor" {
		// Job records are read on a connection of their own: such a read
		// waits while nats-server saves the records' index, and held every
		// write after it on a shared one (docs/performance.md, finding 21).
		rnc, rjs, err := bus.Connect(s.natsConnectOptions("hookstream-"+cmd+"-records"), logger)
		if err != nil {
			return err
		}
		defer rnc.Close()
		bus.StopWhenClosed(ctx, rnc, logger, stop)
		readiness.recordsOn(rnc)
		c.intake.RecordReader, c.processor.RecordReader = rjs, rjs
	}
	var svc interface{ Run(context.Context) error }
	err = whenAvailable(ctx, logger, until, "start "+cmd, func() (err error) {
		switch cmd {
		case "intake":
			svc, err = intake.New(ctx, c.intake, nc, js, logger)
		case "processor":
			svc, err = processor.New(ctx, c.processor, js, logger)
		case "notifier":
			svc, err = notifier.New(ctx, c.notifier, js, logger)
		}
		return err
	})
	if err != nil {
		return err
	}
	readiness.run(workingWhen(svc))
	err = svc.Run(ctx)
	if cause := context.Cause(ctx); errors.Is(cause, bus.ErrConnectionLost) || errors.Is(cause, signing.ErrKeyMismatch) {
		return cause
	}
	return err
}

// startupWait bounds how long a split service waits for JetStream to take
// its first requests: a cluster started with it may not have elected its
// leaders yet, and its streams, consumers and buckets are created then.
const startupWait = 2 * time.Minute

// whenAvailable runs step until it succeeds, fails otherwise than with
// JetStream not available (yet), or until has passed (after one try at
// least); each retry is logged. The steps of one start share until, so
// that the whole start-up waits startupWait at most.
func whenAvailable(ctx context.Context, logger *slog.Logger, until time.Time, what string, step func() error) error {
	policy := backoff.WithContext(backoff.NewExponentialBackOff(
		backoff.WithMaxElapsedTime(max(time.Until(until), time.Nanosecond)), backoff.WithMaxInterval(5*time.Second)), ctx)
	return backoff.RetryNotify(func() error {
		err := step()
		if err != nil && !jetStreamStarting(err) {
			return backoff.Permanent(err)
		}
		return err
	}, policy, func(err error, wait time.Duration) {
		if errors.Is(err, nats.ErrNoResponders) {
			logger.Warn("JetStream not available yet; trying again (no responders: is JetStream enabled on the NATS server, nats-server -js?)", "step", what, "in", wait.Round(time.Millisecond), "error", err)
			return
		}
		logger.Warn("JetStream not available yet; trying again", "step", what, "in", wait.Round(time.Millisecond), "error", err)
	})
}

// jetStreamStarting tells whether err means NATS or JetStream could not
// take a request yet: unreachable (its name not resolved yet, as a
// container's may not be), timed out, or one of the answers of a cluster
// still forming or electing leaders.
func jetStreamStarting(err error) bool {
	var apiErr *jetstream.APIError
	var dnsErr *net.DNSError
	var opErr *net.OpError
	return bus.IsUnavailable(err) || errors.Is(err, nats.ErrNoServers) ||
		errors.As(err, &dnsErr) || (errors.As(err, &opErr) && opErr.Op == "dial") ||
		(errors.As(err, &apiErr) && startingCodes[apiErr.ErrorCode])
}

// startingCodes are the JetStream errors of a cluster that is not ready yet.
var startingCodes = map[jetstream.ErrorCode]bool{
	10005: true, // no suitable peers for placement: a node has not joined yet
	10007: true, // JetStream cluster not assigned to this server
	10008: true, // JetStream system temporarily unavailable
	10009: true, // JetStream cluster can not handle request (no leader)
	10023: true, // insufficient resources: a node is restarting (or a limit: it ends after startupWait)
	10041: true, // a Raft error, as while leaders change
	10076: true, // JetStream not enabled: the server is still starting it
}

func serve(ctx context.Context, s *settings, c configs, logger *slog.Logger, stdout io.Writer) error {
	// With the admin API on, tenants and their keys come from it: a dev
	// tenant there would be a key nobody asked for, which the admin API
	// cannot delete.
	if len(c.intake.APIKeys) == 0 && s.AdminToken == "" {
		key, created, err := allinone.DevKey(s.DataDir)
		if err != nil {
			return err
		}
		c.intake.APIKeys = []intake.APIKey{{Tenant: allinone.DevTenant, Key: key}}
		if created {
			fmt.Fprintf(stdout, "hookstream: no HOOKSTREAM_API_KEYS set; created a development tenant %q with API key:\n\n    %s\n\n(shown once; kept in %s/dev-api-key)\n\n",
				allinone.DevTenant, key, s.DataDir)
		} else {
			fmt.Fprintf(stdout, "hookstream: no HOOKSTREAM_API_KEYS set; using the development tenant %q, API key in %s/dev-api-key\n", allinone.DevTenant, s.DataDir)
		}
	}
	always, interval, err := s.sync()
	if err != nil {
		return err
	}
	var secretKey []byte
	if s.SecretKey != "" {
		secretKey, _ = secretbox.ParseKey(s.SecretKey) // validated with the settings
	}
	app := allinone.New(allinone.Config{
		SecretKey: secretKey, DataDir: s.DataDir, NATSListen: s.NATSListen, NATSToken: s.NATSToken, SyncAlways: always, SyncInterval: interval,
		Topology: c.topology, Intake: c.intake, Processor: c.processor, Notifier: c.notifier,
		NoProcessor: c.noProcessor, ReplaceSecretKey: s.SecretKeyReplace == "yes",
	}, logger)
	if s.OpsAddr != "" {
		stopOps, err := serveOps(ctx, s.OpsAddr, app.Check, logger)
		if err != nil {
			return err
		}
		defer stopOps()
	}
	return app.Run(ctx)
}
