// Package embeddednats runs a nats-server with JetStream inside the
// hookstream process: the storage engine of the all-in-one mode.
package embeddednats

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config configures the embedded server.
type Config struct {
	// StoreDir is where JetStream keeps its files. Required.
	StoreDir string
	// Listen, when set ("127.0.0.1:4222"), also accepts NATS clients on that
	// address. Empty: in-process connections only.
	Listen string
	// Token, when set, is required of every client, in-process ones
	// included: nats://<token>@host:port, or nats.Token. Empty: none, for a
	// server no one else can reach (no Listen).
	Token string
	// SyncAlways makes JetStream sync every write to disk before it
	// acknowledges it. When false, SyncInterval applies.
	SyncAlways bool
	// SyncInterval is how often JetStream syncs to disk when SyncAlways is
	// false. Zero: the server default (2 minutes).
	SyncInterval time.Duration
	// MaxPayload is the largest message in bytes. Zero: 8 MiB.
	MaxPayload int32
	// ServerName names the server. Default "hookstream".
	ServerName string
}

// DefaultMaxPayload is the embedded server's default message size limit:
// room for a 1 MiB job payload and its result in one record.
const DefaultMaxPayload = 8 << 20

// Start starts the server and waits until it accepts connections.
func Start(cfg Config, logger *slog.Logger) (*server.Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("embedded nats: store dir is empty")
	}
	opts := &server.Options{
		ServerName:    cfg.ServerName,
		JetStream:     true,
		StoreDir:      cfg.StoreDir,
		SyncAlways:    cfg.SyncAlways,
		SyncInterval:  cfg.SyncInterval,
		MaxPayload:    cfg.MaxPayload,
		NoSigs:        true,
		DontListen:    cfg.Listen == "",
		Authorization: cfg.Token,
	}
	if opts.ServerName == "" {
		opts.ServerName = "hookstream"
	}
	if opts.MaxPayload == 0 {
		opts.MaxPayload = DefaultMaxPayload
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen address %q: %w", cfg.Listen, err)
		}
		opts.Host = host
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("embedded nats: listen port %q: %w", port, err)
		}
		if opts.Port == 0 {
			opts.Port = server.RANDOM_PORT
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	log := &slogAdapter{logger: logger.With("component", "nats-server"), fatal: make(chan string, 1)}
	ns.SetLoggerV2(log, false, false, false)
	ns.Start()
	// nats-server reports what stops its start (a port in use, a store it
	// cannot open) as a fatal log line, and then never becomes ready.
	for deadline := time.Now().Add(startTimeout); !ns.ReadyForConnections(100 * time.Millisecond); {
		select {
		case why := <-log.fatal:
			ns.Shutdown()
			return nil, fmt.Errorf("embedded nats: %s", why)
		default:
		}
		if time.Now().After(deadline) {
			ns.Shutdown()
			return nil, fmt.Errorf("embedded nats: not ready after %s", startTimeout)
		}
	}
	if !ns.JetStreamEnabled() {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats: JetStream did not start (store dir %s)", cfg.StoreDir)
	}
	return ns, nil
}

// startTimeout bounds the wait for the embedded server to take connections.
const startTimeout = 30 * time.Second

// slogAdapter sends nats-server's log to slog; notices become debug lines so
// that a normal start is quiet. Fatal lines also go to fatal, if it has
// room.
type slogAdapter struct {
	logger *slog.Logger
	fatal  chan string
}

func (a *slogAdapter) Noticef(format string, v ...any) { a.logger.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Warnf(format string, v ...any)   { a.logger.Warn(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Fatalf(format string, v ...any) {
	line := fmt.Sprintf(format, v...)
	a.logger.Error(line)
	select {
	case a.fatal <- line:
	default:
	}
}
func (a *slogAdapter) Errorf(format string, v ...any) { a.logger.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Debugf(format string, v ...any) { a.logger.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Tracef(format string, v ...any) { a.logger.Debug(fmt.Sprintf(format, v...)) }
