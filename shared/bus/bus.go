// Package bus connects to NATS and declares hookstream's streams and buckets:
// the one place that says how they are configured (file storage, DiscardNew,
// retention, replicas, ages). The streams every job passes through keep
// limits retention and are trimmed up to their consumers' ack floors (Trim);
// the others are work queues. It also runs consumers (Workers) and writes
// group commits (Committer).
package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/contract"
)

// ConnectOptions says where and how to connect.
type ConnectOptions struct {
	// URL of the NATS server or cluster (comma-separated). Ignored when
	// InProcess is set.
	URL string
	// InProcess, when set, connects to this embedded server without a socket.
	InProcess *server.Server
	// Name is the client name shown by the server.
	Name string
	// Token authenticates the connection with a token: to an InProcess
	// server that requires one (embeddednats.Config.Token), or to URL when
	// it carries no credentials of its own (nats://token@host:4222).
	Token string
	// Creds is the path of a NATS credentials file (a user JWT and its
	// NKey seed, as nsc writes them), for servers in operator mode.
	Creds string
	// NKeySeed is the path of a file holding a user's NKey seed (SU…),
	// for servers with NKey users.
	NKeySeed string
	// TLS is the connection's TLS, if any: a tls:// URL, or any TLS file
	// set, requires it.
	TLS TLSFiles
	// InboxPrefix replaces _INBOX in the subjects where replies come back
	// (every JetStream request's), so that a NATS user may be allowed to
	// subscribe to its own replies alone; "" keeps _INBOX.
	InboxPrefix string
}

// TLSFiles are the PEM files of a connection's TLS.
type TLSFiles struct {
	// CA is the CA certificates that the server's certificate must chain
	// to; "" trusts the system's roots.
	CA string
	// Cert and Key are the client's certificate and key, for servers that
	// verify their clients (both or neither).
	Cert, Key string
}

// authOptions are the nats.go options of opts' credentials and TLS.
func authOptions(opts ConnectOptions, url string) ([]nats.Option, error) {
	var nopts []nats.Option
	if opts.Token != "" && !strings.Contains(url, "@") {
		nopts = append(nopts, nats.Token(opts.Token))
	}
	if opts.Creds != "" {
		nopts = append(nopts, nats.UserCredentials(opts.Creds))
	}
	if opts.NKeySeed != "" {
		opt, err := nats.NkeyOptionFromSeed(opts.NKeySeed)
		if err != nil {
			return nil, fmt.Errorf("nkey seed file: %w", err)
		}
		nopts = append(nopts, opt)
	}
	if opts.TLS.CA != "" {
		nopts = append(nopts, nats.RootCAs(opts.TLS.CA))
	}
	if opts.TLS.Cert != "" || opts.TLS.Key != "" {
		nopts = append(nopts, nats.ClientCert(opts.TLS.Cert, opts.TLS.Key))
	}
	if opts.TLS != (TLSFiles{}) {
		nopts = append(nopts, nats.Secure())
	}
	if opts.InboxPrefix != "" {
		nopts = append(nopts, nats.CustomInboxPrefix(opts.InboxPrefix))
	}
	return nopts, nil
}

// Connect connects to NATS. Publishes are not buffered while disconnected, so
// a publish during an outage fails at once instead of being sent later: an
// intake that answered 503 must not store the job behind the client's back.
func Connect(opts ConnectOptions, logger *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	nopts := []nats.Option{
		nats.Name(opts.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(-1),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logger.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		// Asynchronous errors (a slow consumer's dropped messages, a
		// subscription's consumer gone) go to the log, not to stderr.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				logger.Warn("nats asynchronous error", "subject", sub.Subject, "error", err)
				return
			}
			logger.Warn("nats asynchronous error", "error", err)
		}),
	}
	url := opts.URL
	if opts.InProcess != nil {
		nopts = append(nopts, nats.InProcessServer(opts.InProcess))
		url = ""
	}
	auth, err := authOptions(opts, url)
	if err != nil {
		return nil, nil, err
	}
	nc, err := nats.Connect(url, append(nopts, auth...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to nats: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream context: %w", err)
	}
	return nc, js, nil
}

// ErrConnectionLost is the cause given to StopWhenClosed's stop.
var ErrConnectionLost = errors.New("the NATS server closed the connection for good")

// StopWhenClosed calls stop once nc is closed, while ctx runs, by anything
// but its own Close: the server ended it with an error that nats.go does
// not reconnect from (a protocol error such as a control line too long).
// Every request on nc would fail from then on, so the process stops, with
// an error, for its supervisor to start it again, rather than answer 503
// for ever. A close once ctx has ended is the process's own.
func StopWhenClosed(ctx context.Context, nc *nats.Conn, logger *slog.Logger, stop context.CancelCauseFunc) {
	nc.SetClosedHandler(func(nc *nats.Conn) {
		if err := nc.LastError(); err != nil && ctx.Err() == nil {
			logger.Error("NATS connection closed for good; stopping", "connection", nc.Opts.Name, "error", err)
			stop(fmt.Errorf("%w (%s): %w", ErrConnectionLost, nc.Opts.Name, err))
		}
	})
}

// IsUnavailable reports whether err means JetStream could not take a request
// now (disconnected, timed out, no responders, storage full): the caller
// should answer 503 and have the client retry.
func IsUnavailable(err error) bool {
	return errors.Is(err, nats.ErrConnectionClosed) ||
		errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, nats.ErrReconnectBufExceeded) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		streamFull(err)
}

// errCodeStoreFailed is JetStream's refusal of a write its stream has no
// room for (maximum messages or bytes exceeded, DiscardNew).
const errCodeStoreFailed = 10077

// streamFull tells whether err is a write refused by a full stream: retry
// later, once consumers made room.
func streamFull(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStoreFailed
}

// CheckAvailable tells why js cannot serve a service now, or nil: its
// connection, or one of others (a service's second connection), is down,
// or JetStream does not answer for stream, the one the service works on.
// It is what the services' /readyz report.
func CheckAvailable(ctx context.Context, js jetstream.JetStream, stream string, others ...*nats.Conn) error {
	for _, nc := range append([]*nats.Conn{js.Conn()}, others...) {
		if !nc.IsConnected() {
			return errors.New("not connected to NATS")
		}
	}
	if _, err := js.Stream(ctx, stream); err != nil {
		return fmt.Errorf("JetStream does not answer for %s: %w", stream, err)
	}
	return nil
}

// NotStored reports whether a failed publish surely stored nothing: the
// server refused it (an API error), or it never reached a stream (no
// responders, too large, a bad subject). Any other error, a timeout or a
// canceled context above all, leaves it unclear: the message may be stored
// all the same.
func NotStored(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) ||
		errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrMaxPayload) ||
		errors.Is(err, nats.ErrBadSubject)
}

// JetStream returns the JetStream context of a connection.
func JetStream(nc *nats.Conn) (jetstream.JetStream, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream context: %w", err)
	}
	return js, nil
}

// ReadAll calls fn with the current value of every key of kv that matches
// filter (NATS wildcards), then returns. Deleted keys are skipped. opts are
// the watch's (jetstream.MetaOnly: the keys without their values).
func ReadAll(ctx context.Context, kv jetstream.KeyValue, filter string, fn func(jetstream.KeyValueEntry) error, opts ...jetstream.WatchOpt) error {
	w, err := kv.Watch(ctx, filter, append(opts, jetstream.IgnoreDeletes())...)
	if err != nil {
		return fmt.Errorf("read %s: %w", filter, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case entry, ok := <-w.Updates():
			switch {
			case !ok: // a listing cut short must not pass for a whole one
				return fmt.Errorf("read %s: %w before every value was read", filter, errWatchEnded)
			case entry == nil: // every current value has been sent
				return nil
			}
			if err := fn(entry); err != nil {
				return err
			}
		}
	}
}

// RedactURL is a NATS URL with whatever stands before its @ (its
// credentials: user and password, or a token) left out, for messages and
// logs; also when raw cannot be parsed as a URL.
func RedactURL(raw string) string {
	raw = strings.TrimSpace(raw)
	at := strings.LastIndex(raw, "@")
	if at < 0 {
		return raw
	}
	scheme, _, found := strings.Cut(raw, "://")
	if !found {
		return "REDACTED" + raw[at:]
	}
	return scheme + "://REDACTED" + raw[at:]
}

// PublishJSON publishes v as JSON to subject with JetStream, de-duplicated on
// msgID, marked with the contract version, and waits for the PubAck.
func PublishJSON(ctx context.Context, js Publisher, subject, msgID string, v any) error {
	_, err := PublishJSONAck(ctx, js, subject, msgID, v)
	return err
}

// PublishJSONAck is PublishJSON, returning the message's PubAck.
func PublishJSONAck(ctx context.Context, js Publisher, subject, msgID string, v any) (*jetstream.PubAck, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", msgID, err)
	}
	return PublishData(ctx, js, subject, msgID, data)
}

// PublishData is PublishJSONAck of data already encoded.
func PublishData(ctx context.Context, js Publisher, subject, msgID string, data []byte) (*jetstream.PubAck, error) {
	msg := nats.NewMsg(subject)
	msg.Data = data
	msg.Header.Set(contract.HeaderMsgID, msgID)
	msg.Header.Set(contract.HeaderContractVersion, contract.Version)
	ack, err := js.PublishMsg(ctx, msg)
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", msgID, err)
	}
	return ack, nil
}

// Mirror's waits.
const (
	// MirrorRewatch is how long Mirror waits before it watches a bucket
	// again after its watch ended.
	MirrorRewatch = time.Second
	// MirrorStartWait is how long Mirror tries to read a bucket's entries
	// a first time before it gives up.
	MirrorStartWait = 2 * time.Minute
)

// Mirror keeps an in-memory view of a bucket: it calls apply with every
// current entry, closes ready once they have all been applied, then applies
// every change until ctx ends. Deletes reach apply too (Operation() is not
// KeyValuePut).
//
// A watch can end while ctx goes on: nats.go gives up on a watch whose
// consumer it cannot create again, as when the bucket's stream has no
// leader for a moment. The view would then stop changing, with nobody told.
// Mirror logs it and watches again after MirrorRewatch, applies every
// current entry again, and applies as deleted the keys it held that are
// gone. A watch that cannot start, or ends before ready, is tried again
// the same way (a fresh cluster may not have elected the bucket's leader
// yet), for up to MirrorStartWait. A bucket that does not exist is an
// error at once, before ready or after: the view cannot be kept.
func Mirror(ctx context.Context, kv jetstream.KeyValue, logger *slog.Logger, ready chan<- struct{}, apply func(jetstream.KeyValueEntry)) error {
	return MirrorKeys(ctx, kv, ">", logger, ready, apply)
}

// MirrorKeys is Mirror of the bucket's keys that match filter (a subject
// filter: "*.signing").
func MirrorKeys(ctx context.Context, kv jetstream.KeyValue, filter string, logger *slog.Logger, ready chan<- struct{}, apply func(jetstream.KeyValueEntry)) error {
	m := &mirror{kv: kv, filter: filter, apply: apply, ready: ready, live: map[string]bool{}}
	began := time.Now()
	for {
		err := m.watch(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, nats.ErrStreamNotFound):
			return err
		case !m.wasReady && time.Since(began) >= MirrorStartWait:
			return fmt.Errorf("%w (for %s)", err, MirrorStartWait)
		}
		logger.Warn("watch of a bucket ended or did not start; watching it again", "bucket", kv.Bucket(), "in", MirrorRewatch, "ready", m.wasReady, "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(MirrorRewatch):
		}
	}
}

// mirror is the state of a Mirror that outlives one watch.
type mirror struct {
	kv       jetstream.KeyValue
	filter   string
	apply    func(jetstream.KeyValueEntry)
	ready    chan<- struct{}
	wasReady bool
	live     map[string]bool // the keys applied as present
}

var errWatchEnded = errors.New("the watch ended")

func (m *mirror) watch(ctx context.Context) error {
	w, err := m.kv.Watch(ctx, m.filter)
	if err != nil {
		return fmt.Errorf("watch %s: %w", m.kv.Bucket(), err)
	}
	defer func() { _ = w.Stop() }()
	replayed := map[string]bool{} // nil once every current entry is in
	for {
		select {
		case <-ctx.Done():
			return nil
		case entry, ok := <-w.Updates():
			switch {
			case !ok:
				return fmt.Errorf("watch %s: %w", m.kv.Bucket(), errWatchEnded)
			case entry == nil:
				if replayed != nil {
					m.forgetAllBut(replayed)
					replayed = nil
				}
				if !m.wasReady {
					m.wasReady = true
					close(m.ready)
				}
				continue
			}
			if replayed != nil {
				replayed[entry.Key()] = true
			}
			if entry.Operation() == jetstream.KeyValuePut {
				m.live[entry.Key()] = true
			} else {
				delete(m.live, entry.Key())
			}
			m.apply(entry)
		}
	}
}

// forgetAllBut applies as deleted every key held but not in keep: after a
// watch started again, those deleted while none ran.
func (m *mirror) forgetAllBut(keep map[string]bool) {
	for key := range m.live {
		if !keep[key] {
			delete(m.live, key)
			m.apply(deletedEntry{bucket: m.kv.Bucket(), key: key})
		}
	}
}

// deletedEntry is a key found gone, as a key-value entry.
type deletedEntry struct{ bucket, key string }

func (e deletedEntry) Bucket() string                  { return e.bucket }
func (e deletedEntry) Key() string                     { return e.key }
func (e deletedEntry) Value() []byte                   { return nil }
func (e deletedEntry) Revision() uint64                { return 0 }
func (e deletedEntry) Created() time.Time              { return time.Time{} }
func (e deletedEntry) Delta() uint64                   { return 0 }
func (e deletedEntry) Operation() jetstream.KeyValueOp { return jetstream.KeyValueDelete }

// EventMsg is an event message as every hookstream publisher of events
// writes it: on hookstream.events.<tenant>.<type>, de-duplicated on msgID,
// with the contract version and the event's time.
func EventMsg(tenant, eventType, msgID string, at time.Time, data []byte) *nats.Msg {
	msg := nats.NewMsg(contract.EventSubject(tenant, eventType))
	msg.Data = data
	msg.Header.Set(contract.HeaderMsgID, msgID)
	msg.Header.Set(contract.HeaderContractVersion, contract.Version)
	msg.Header.Set(contract.HeaderEventTime, at.UTC().Format(time.RFC3339Nano))
	return msg
}

// APISubject is the subject of the JetStream API call api (such as
// "STREAM.MSG.GET.<stream>") for js: under its API prefix, or its domain's.
func APISubject(js jetstream.JetStream, api string) string {
	o := js.Options()
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API." + api
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "." + api
	}
	return "$JS.API." + api
}
