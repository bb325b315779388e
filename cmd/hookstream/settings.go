package main

import (
	"bytes"
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/hookstream/hookstream/services/intake"
	"github.com/hookstream/hookstream/services/processor"
	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/secretbox"
	"github.com/hookstream/hookstream/shared/ssrf"
)

// settings are every HOOKSTREAM_* variable, each with its flag: the one
// place where the environment and the command line map onto the services'
// configs. A flag wins over its variable, which wins over the default.
type settings struct {
	HTTPAddr          string
	DataDir           string
	NATSURL           string
	NATSListen        string
	NATSToken         string
	NATSCreds         string
	NATSNKey          string
	NATSTLSCA         string
	NATSTLSCert       string
	NATSTLSKey        string
	NATSInboxPrefix   string
	Replicas          int
	JetStreamSync     string
	APIKeys           string
	SecretKey         string
	SecretKeyReplace  string
	AdminToken        string
	AllowedNetworks   string
	JobWorkers        string
	ExternalTypes     string
	JobMaxAttempts    int
	JobConcurrency    int
	NotifyConc        int
	EndpointConc      int
	ParkRate          int
	DisableAfter      time.Duration
	MaxInflight       int
	MaxWaits          int
	MaxEndpoints      int
	TenantRate        int
	MaxBodyBytes      int64
	MaxJSONDepth      int
	RetrySchedule     string
	AttemptTimeout    time.Duration
	StreamMaxBytes    int64
	JobRetention      time.Duration
	DeliveryRetention time.Duration
	LogLevel          string
	LogFormat         string
	PprofAddr         string
	OpsAddr           string
	GroupCommit       string
	MemoryLimit       string
}

// setting describes one variable for the flag set and the README table.
type setting struct {
	env, flag, def, help string
	target               any
}

func (s *settings) table() []setting {
	return []setting{
		{"HOOKSTREAM_HTTP_ADDR", "http-addr", ":8080", "HTTP listen address of the API", &s.HTTPAddr},
		{"HOOKSTREAM_DATA_DIR", "data-dir", "./data", "embedded mode: where JetStream stores its files, and the dev API key, secret key and NATS token made for it", &s.DataDir},
		{"HOOKSTREAM_NATS_URL", "nats-url", "nats://127.0.0.1:4222", "split mode: NATS server or cluster URLs, comma-separated, with the credentials the servers require (nats://user:password@host:4222 or nats://<token>@host:4222; never logged)", &s.NATSURL},
		{"HOOKSTREAM_NATS_LISTEN", "nats-listen", "", "embedded mode: also accept NATS clients on this address (e.g. 127.0.0.1:4222), which authenticate with HOOKSTREAM_NATS_TOKEN; empty: in-process only", &s.NATSListen},
		{"HOOKSTREAM_NATS_TOKEN", "nats-token", "", "embedded mode with HOOKSTREAM_NATS_LISTEN: the token every NATS client gives (nats://<token>@host:4222), at least 16 of a-z A-Z 0-9 - _ . ~; empty: generated on first start and kept in <data dir>/nats-token. Anyone with it has all of hookstream's data. Split mode: the token to connect with, unless HOOKSTREAM_NATS_URL carries credentials", &s.NATSToken},
		{"HOOKSTREAM_NATS_CREDS", "nats-creds", "", "split mode: a NATS credentials file (a user JWT and its NKey seed, as nsc and NATS account services write them), for servers in operator mode", &s.NATSCreds},
		{"HOOKSTREAM_NATS_NKEY", "nats-nkey", "", "split mode: a file holding the NKey seed (SU…) of a NATS user, for servers with NKey users", &s.NATSNKey},
		{"HOOKSTREAM_NATS_TLS_CA", "nats-tls-ca", "", "split mode: PEM file of the CA certificates that the NATS servers' certificates must chain to; setting it, a client certificate, or a tls:// URL requires TLS (with the system's roots when this is empty)", &s.NATSTLSCA},
		{"HOOKSTREAM_NATS_TLS_CERT", "nats-tls-cert", "", "split mode: PEM client certificate, for NATS servers that verify their clients (with HOOKSTREAM_NATS_TLS_KEY)", &s.NATSTLSCert},
		{"HOOKSTREAM_NATS_TLS_KEY", "nats-tls-key", "", "split mode: PEM private key of HOOKSTREAM_NATS_TLS_CERT", &s.NATSTLSKey},
		{"HOOKSTREAM_NATS_INBOX_PREFIX", "nats-inbox-prefix", "_INBOX", "split mode: the subject prefix of the replies to this process's NATS requests (every JetStream call's); give each service's NATS user a prefix of its own (e.g. _INBOX_intake) and allow it to subscribe to <prefix>.> alone, so that no user can read another's replies (docs/nats-permissions.md)", &s.NATSInboxPrefix},
		{"HOOKSTREAM_NATS_REPLICAS", "nats-replicas", "1", "replicas of every stream and bucket (3 on a cluster)", &s.Replicas},
		{"HOOKSTREAM_JETSTREAM_SYNC", "jetstream-sync", "always", "embedded mode: 'always' syncs every write to disk before a 202 (survives power loss); an interval such as 2m (at least 10ms) is faster but a host crash can lose acknowledged jobs", &s.JetStreamSync},
		{"HOOKSTREAM_API_KEYS", "api-keys", "", "comma-separated tenant:key pairs (tenant: 1-64 of a-z A-Z 0-9 - _; key: at least 16 characters); empty in embedded mode without HOOKSTREAM_ADMIN_TOKEN: a dev tenant and key kept in the data dir (with it, tenants and keys come from the admin API)", &s.APIKeys},
		{"HOOKSTREAM_ADMIN_TOKEN", "admin-token", "", "bearer token of the admin API (/v1/admin: tenants and their API keys), at least 16 characters; empty: admin API off", &s.AdminToken},
		{"HOOKSTREAM_SECRET_KEY", "secret-key", "", "base64 of 32 bytes that encrypts signing secrets at rest; empty in embedded mode: generated and kept in the data dir (required in split mode)", &s.SecretKey},
		{"HOOKSTREAM_SECRET_KEY_REPLACE", "secret-key-replace", "no", "'yes' records this process's secret key as the deployment's at start, in place of the one recorded (whose sealed signing secrets and job ids this key cannot read); set it once, then remove it. 'no': a service with another key than the recorded one exits", &s.SecretKeyReplace},
		{"HOOKSTREAM_ALLOWED_CALLBACK_NETWORKS", "allowed-callback-networks", "", "CIDRs callbacks may reach although non-public (e.g. 127.0.0.0/8 for local testing)", &s.AllowedNetworks},
		{"HOOKSTREAM_JOB_WORKERS", "job-workers", "", "job types done by internal HTTP services: type=url or type=url|timeout (default 5m a call; a response of at most 1 MiB is the result), comma-separated", &s.JobWorkers},
		{"HOOKSTREAM_EXTERNAL_JOB_TYPES", "external-job-types", "", "job types accepted by intake but run by processors outside hookstream, comma-separated", &s.ExternalTypes},
		{"HOOKSTREAM_JOB_MAX_ATTEMPTS", "job-max-attempts", "5", "runs of a job before it fails", &s.JobMaxAttempts},
		{"HOOKSTREAM_PROCESSOR_CONCURRENCY", "processor-concurrency", "64", "jobs of each type run at once per processor process (lower it for job types whose HTTP worker takes fewer); 0 in embedded mode: no processor in this process, jobs wait for `hookstream processor` processes connected through HOOKSTREAM_NATS_LISTEN (needs HOOKSTREAM_NATS_LISTEN and HOOKSTREAM_SECRET_KEY, which those processors share)", &s.JobConcurrency},
		{"HOOKSTREAM_NOTIFIER_CONCURRENCY", "notifier-concurrency", "64", "webhook deliveries from the delivery queue in flight per notifier process; fan-out's first attempts (up to 32), the drains of parked deliveries (up to 128 × HOOKSTREAM_ENDPOINT_CONCURRENCY) and attempts to slow endpoints that stepped aside after 2 s (up to 8 × this, and 384 of fan-out's first attempts) come on top", &s.NotifyConc},
		{"HOOKSTREAM_ENDPOINT_CONCURRENCY", "endpoint-concurrency", "8", "webhook requests in flight per endpoint (or callback host) per notifier process; more wait in JetStream", &s.EndpointConc},
		{"HOOKSTREAM_PARK_RATE", "park-rate", "2000", "deliveries per second a notifier process moves out of the delivery queue when their endpoint's circuit is open (parking); higher clears a large backlog queued before the circuit opened sooner, at the cost of the CPU and disk other endpoints' deliveries need", &s.ParkRate},
		{"HOOKSTREAM_DISABLE_AFTER", "disable-after", "120h", "an endpoint failing every delivery for this long is disabled", &s.DisableAfter},
		{"HOOKSTREAM_MAX_INFLIGHT", "max-inflight", "1024", "write requests (every POST, PATCH and DELETE under /v1, but the admin API's) served at once per intake; more get 503 + Retry-After", &s.MaxInflight},
		{"HOOKSTREAM_MAX_ENDPOINTS_PER_TENANT", "max-endpoints-per-tenant", "1000", "endpoints a tenant may register (every notifier keeps every endpoint in memory); one more gets 409", &s.MaxEndpoints},
		{"HOOKSTREAM_MAX_WAITS_PER_TENANT", "max-waits-per-tenant", "256", "long-polls (?wait=) and event streams a tenant may have open at once per intake; more get 429 + Retry-After", &s.MaxWaits},
		{"HOOKSTREAM_TENANT_RATE_LIMIT", "tenant-rate-limit", "0", "write requests (as for HOOKSTREAM_MAX_INFLIGHT) per second per tenant per intake (burst: one second's worth); more get 429 + Retry-After; 0: no limit", &s.TenantRate},
		{"HOOKSTREAM_MAX_BODY_BYTES", "max-body-bytes", "1048576", "largest request body in bytes (or with KiB, MiB, GiB)", &s.MaxBodyBytes},
		{"HOOKSTREAM_MAX_JSON_DEPTH", "max-json-depth", "32", "deepest JSON nesting of a request", &s.MaxJSONDepth},
		{"HOOKSTREAM_RETRY_SCHEDULE", "retry-schedule", "5s,5m,30m,2h,5h,10h,14h,20h,24h", "waits before each webhook retry (±20 % jitter)", &s.RetrySchedule},
		{"HOOKSTREAM_ATTEMPT_TIMEOUT", "attempt-timeout", "15s", "timeout of one webhook attempt", &s.AttemptTimeout},
		{"HOOKSTREAM_STREAM_MAX_BYTES", "stream-max-bytes", "1073741824", "size of the jobs and events streams in bytes (or with KiB, MiB, GiB); when full, intake answers 503", &s.StreamMaxBytes},
		{"HOOKSTREAM_JOB_RETENTION", "job-retention", "168h", "how long jobs (and their Idempotency-Keys) are kept", &s.JobRetention},
		{"HOOKSTREAM_DELIVERY_RETENTION", "delivery-retention", "192h", "how long delivery logs (and pending deliveries) are kept: at least 24h, and longer than each wait of the retry schedule with its jitter (+20 %)", &s.DeliveryRetention},
		{"HOOKSTREAM_GROUP_COMMIT", "group-commit", "auto", "share one disk sync among concurrent JetStream writes (group commits): jobs stored as their message alone that arrive at the same moment are written as one message (a job batch), other jobs, events, deliveries and records as atomic batches: 'on', 'off', or 'auto': job batches on in embedded mode with a processor of its own, atomic batches on in embedded mode with HOOKSTREAM_JETSTREAM_SYNC=always, where they are faster (with an interval sync they cost more than they save); both off in split mode, and job batches off without a processor in the process (HOOKSTREAM_PROCESSOR_CONCURRENCY=0): they need every processor to be of this version or later. Atomic batches need NATS 2.12+", &s.GroupCommit},
		{"HOOKSTREAM_MEMORY_LIMIT", "memory-limit", "auto", "soft limit of the process's Go memory (B, KiB, MiB or GiB; a bare number is bytes; at least 32MiB), above which the garbage collector works harder to stay under it; 'auto': 80 % of the memory available (the least of the limits of the process's cgroup and its parents and the host's memory; none where that cannot be read, as off Linux); 'off': none. Go's GOMEMLIMIT, when set, wins", &s.MemoryLimit},
		{"HOOKSTREAM_LOG_LEVEL", "log-level", "info", "debug, info, warn or error", &s.LogLevel},
		{"HOOKSTREAM_LOG_FORMAT", "log-format", "text", "text or json", &s.LogFormat},
		{"HOOKSTREAM_OPS_ADDR", "ops-addr", "", "also serve /healthz, /readyz and /metrics on this address (e.g. :9090), for probes and Prometheus: the only HTTP of `hookstream processor` and `hookstream notifier`, whose counters are otherwise not exposed; empty: off", &s.OpsAddr},
		{"HOOKSTREAM_PPROF_ADDR", "pprof-addr", "", "serve Go's /debug/pprof profiles on this address (e.g. 127.0.0.1:6060), for profiling under load; empty: off. Never expose it publicly", &s.PprofAddr},
	}
}

// parseSettings reads the environment and args. Errors name the variable.
func parseSettings(cmd string, args []string, getenv func(string) string, usage io.Writer) (*settings, error) {
	s := &settings{}
	fs := flag.NewFlagSet("hookstream "+cmd, flag.ContinueOnError)
	fs.SetOutput(usage)
	table := s.table()
	values := make([]*string, len(table))
	for i, st := range table {
		// The flag's default is the setting's own, never the environment's
		// value: usage text prints defaults, and the environment holds
		// secrets (keys, tokens, NATS credentials).
		values[i] = fs.String(st.flag, st.def, strings.ReplaceAll(st.help, "`", "")+" ("+st.env+")") // a `word` would name the flag's value
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for i, st := range table {
		if env, ok := lookup(getenv, st.env); ok && !given[st.flag] {
			*values[i] = env // a flag wins over its variable
		}
		if err := assign(st.target, *values[i]); err != nil {
			return nil, fmt.Errorf("%s (--%s): %w", st.env, st.flag, err)
		}
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	if err := s.validateOps(cmd); err != nil {
		return nil, err
	}
	if err := s.validateSplit(cmd); err != nil {
		return nil, err
	}
	return s, s.validateNoProcessor(cmd)
}

// validateSplit checks what a service needs in split mode, before it
// connects: it may wait minutes for NATS.
func (s *settings) validateSplit(cmd string) error {
	keys, _ := s.apiKeys() // validated with the settings
	switch {
	case cmd == "serve" && s.Replicas != 1:
		return errors.New("HOOKSTREAM_NATS_REPLICAS (--nats-replicas): the embedded server is one node, with 1 replica; more need a NATS cluster (split mode)")
	case cmd == "serve" && s.NATSToken != "" && (len(s.NATSToken) < 16 || strings.Trim(s.NATSToken, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~") != ""):
		// The embedded listener's token goes in its clients' URLs; in split
		// mode it is the NATS server's own, whatever that takes.
		return errors.New("HOOKSTREAM_NATS_TOKEN (--nats-token): use at least 16 of a-z A-Z 0-9 - _ . ~ (it goes in URLs)")
	case cmd == "serve":
		return s.refuseClientAuth()
	case s.SecretKey == "":
		return errors.New("HOOKSTREAM_SECRET_KEY (--secret-key): required in split mode, the same on every service")
	case cmd == "intake" && len(keys) == 0 && s.AdminToken == "":
		return errors.New("HOOKSTREAM_API_KEYS (--api-keys) or HOOKSTREAM_ADMIN_TOKEN (--admin-token): one is required in split mode")
	}
	return s.checkClientAuth()
}

// refuseClientAuth refuses, in embedded mode, the settings of a NATS
// connection of split mode: the embedded server takes a token and has no
// TLS, and a file given for it would be silently unused.
func (s *settings) refuseClientAuth() error {
	splitOnly := []string{"HOOKSTREAM_NATS_CREDS", "HOOKSTREAM_NATS_NKEY", "HOOKSTREAM_NATS_TLS_CA", "HOOKSTREAM_NATS_TLS_CERT", "HOOKSTREAM_NATS_TLS_KEY", "HOOKSTREAM_NATS_INBOX_PREFIX"}
	for _, st := range s.table() {
		if !slices.Contains(splitOnly, st.env) {
			continue
		}
		if v := *st.target.(*string); v != st.def {
			return fmt.Errorf("%s (--%s): split mode only; the embedded NATS server (hookstream serve) takes HOOKSTREAM_NATS_TOKEN and has no TLS", st.env, st.flag)
		}
	}
	return nil
}

// checkClientAuth checks the credentials and TLS files of a split-mode
// NATS connection before it is made, never printing what they hold: a
// service would otherwise retry the connection for minutes, or fail on
// the first reconnect.
func (s *settings) checkClientAuth() error {
	userinfo := false
	for raw := range strings.SplitSeq(s.NATSURL, ",") {
		if u, err := url.Parse(strings.TrimSpace(raw)); err == nil && u.User != nil {
			userinfo = true
		}
	}
	// A credentials file or an NKey is the connection's only way to
	// authenticate; a token and a URL's credentials may both be given, as
	// before either was (the URL's win).
	others := []struct {
		env string
		set bool
	}{{"HOOKSTREAM_NATS_TOKEN", s.NATSToken != ""}, {"credentials in HOOKSTREAM_NATS_URL", userinfo}}
	for _, file := range []struct {
		env string
		set bool
	}{{"HOOKSTREAM_NATS_CREDS", s.NATSCreds != ""}, {"HOOKSTREAM_NATS_NKEY", s.NATSNKey != ""}} {
		if !file.set {
			continue
		}
		if s.NATSCreds != "" && s.NATSNKey != "" {
			return errors.New("HOOKSTREAM_NATS_CREDS and HOOKSTREAM_NATS_NKEY are both given: a NATS connection authenticates one way; keep one")
		}
		for _, o := range others {
			if o.set {
				return fmt.Errorf("%s and %s are both given: a NATS connection authenticates one way; keep one", file.env, o.env)
			}
		}
	}
	if s.NATSCreds != "" {
		data, err := os.ReadFile(s.NATSCreds)
		if err != nil {
			return fmt.Errorf("HOOKSTREAM_NATS_CREDS (--nats-creds): %w", err)
		}
		_, jwtErr := nkeys.ParseDecoratedJWT(data)
		_, seedErr := nkeys.ParseDecoratedNKey(data)
		if jwtErr != nil || seedErr != nil || !bytes.Contains(data, []byte("BEGIN NATS USER JWT")) {
			return fmt.Errorf("HOOKSTREAM_NATS_CREDS (--nats-creds): %s is not a NATS credentials file (a user JWT and its NKey seed, between -----BEGIN NATS USER JWT----- and -----BEGIN USER NKEY SEED----- lines)", s.NATSCreds)
		}
	}
	if s.NATSNKey != "" {
		if _, err := nats.NkeyOptionFromSeed(s.NATSNKey); err != nil {
			return fmt.Errorf("HOOKSTREAM_NATS_NKEY (--nats-nkey): %s: not a file holding a user's NKey seed (SU…): %w", s.NATSNKey, redactedSeedError(err))
		}
	}
	if s.NATSTLSCA != "" {
		data, err := os.ReadFile(s.NATSTLSCA)
		if err != nil {
			return fmt.Errorf("HOOKSTREAM_NATS_TLS_CA (--nats-tls-ca): %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(data) {
			return fmt.Errorf("HOOKSTREAM_NATS_TLS_CA (--nats-tls-ca): %s holds no PEM certificate", s.NATSTLSCA)
		}
	}
	switch {
	case (s.NATSTLSCert == "") != (s.NATSTLSKey == ""):
		return errors.New("HOOKSTREAM_NATS_TLS_CERT (--nats-tls-cert) and HOOKSTREAM_NATS_TLS_KEY (--nats-tls-key): give both, or neither")
	case s.NATSTLSCert != "":
		if _, err := tls.LoadX509KeyPair(s.NATSTLSCert, s.NATSTLSKey); err != nil {
			return fmt.Errorf("HOOKSTREAM_NATS_TLS_CERT (--nats-tls-cert) and HOOKSTREAM_NATS_TLS_KEY (--nats-tls-key): %w", err)
		}
	}
	p := s.NATSInboxPrefix
	if p == "" || strings.ContainsAny(p, "*> \t\r\n") || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") || strings.Contains(p, "..") {
		return fmt.Errorf("HOOKSTREAM_NATS_INBOX_PREFIX (--nats-inbox-prefix): %q is not a subject prefix (tokens separated by dots, no wildcards or spaces)", p)
	}
	return nil
}

// redactedSeedError is err without a seed that a message may quote.
func redactedSeedError(err error) error {
	if strings.Contains(err.Error(), "SU") {
		return errors.New("no valid seed found")
	}
	return err
}

// natsConnectOptions are the options of a split-mode service's NATS
// connections.
func (s *settings) natsConnectOptions(name string) bus.ConnectOptions {
	prefix := s.NATSInboxPrefix
	if prefix == "_INBOX" {
		prefix = ""
	}
	return bus.ConnectOptions{
		URL: s.NATSURL, Name: name, Token: s.NATSToken, Creds: s.NATSCreds, NKeySeed: s.NATSNKey,
		TLS: bus.TLSFiles{CA: s.NATSTLSCA, Cert: s.NATSTLSCert, Key: s.NATSTLSKey}, InboxPrefix: prefix,
	}
}

// checkListenAddr tells why addr is not a host:port to listen on.
func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// checkNATSURLs tells why a comma-separated list of NATS URLs cannot be
// read, without the credentials they may carry.
func checkNATSURLs(list string) error {
	if list == "" {
		return nil
	}
	for raw := range strings.SplitSeq(list, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			return fmt.Errorf("%q is not a URL", bus.RedactURL(raw))
		}
		if u.Host == "" {
			return fmt.Errorf("%q has no host", bus.RedactURL(raw))
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("%q: port %q is not a number from 1 to 65535", bus.RedactURL(raw), p)
			}
		}
	}
	return nil
}

// validateOps refuses a listen address that another listener of cmd takes,
// before anything starts: the second listener would fail once the first
// had started, with a message that names neither setting.
func (s *settings) validateOps(cmd string) error {
	type listener struct{ env, flag, addr string }
	var listeners []listener
	if (cmd == "serve" || cmd == "intake") && s.HTTPAddr == "" {
		return errors.New("HOOKSTREAM_HTTP_ADDR (--http-addr): empty; give a host:port such as :8080 or 127.0.0.1:8080")
	}
	if cmd == "serve" || cmd == "intake" {
		listeners = append(listeners, listener{"HOOKSTREAM_HTTP_ADDR", "http-addr", s.HTTPAddr})
	}
	if cmd == "serve" {
		listeners = append(listeners, listener{"HOOKSTREAM_NATS_LISTEN", "nats-listen", s.NATSListen})
	}
	listeners = append(listeners, listener{"HOOKSTREAM_PPROF_ADDR", "pprof-addr", s.PprofAddr})
	if cmd == "serve" { // the others' ops address is checked below, with reasons
		listeners = append(listeners, listener{"HOOKSTREAM_OPS_ADDR", "ops-addr", s.OpsAddr})
	}
	for i, a := range listeners {
		for _, b := range listeners[:i] {
			if a.addr != "" && sameListenAddr(a.addr, b.addr) {
				return fmt.Errorf("%s (--%s): %s takes the port of %s (%s)", a.env, a.flag, a.addr, b.env, b.addr)
			}
		}
	}
	if s.OpsAddr == "" {
		return nil
	}
	if err := checkListenAddr(s.OpsAddr); err != nil {
		return fmt.Errorf("HOOKSTREAM_OPS_ADDR (--ops-addr): %w", err)
	}
	switch {
	case (cmd == "serve" || cmd == "intake") && sameListenAddr(s.OpsAddr, s.HTTPAddr):
		return fmt.Errorf("HOOKSTREAM_OPS_ADDR (--ops-addr): %s is HOOKSTREAM_HTTP_ADDR's; the API serves /healthz, /readyz and /metrics itself", s.OpsAddr)
	case s.PprofAddr != "" && sameListenAddr(s.OpsAddr, s.PprofAddr):
		return fmt.Errorf("HOOKSTREAM_OPS_ADDR (--ops-addr): %s is HOOKSTREAM_PPROF_ADDR's", s.OpsAddr)
	}
	return nil
}

// sameListenAddr tells whether listeners on a and b would take the same
// port: the same port on the same host, or on every address of either.
func sameListenAddr(a, b string) bool {
	ah, ap, err1 := net.SplitHostPort(a)
	bh, bp, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || ap != bp || ap == "0" {
		return false
	}
	every := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ah == bh || every(ah) || every(bh)
}

func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

func assign(target any, v string) error {
	var err error
	switch t := target.(type) {
	case *string:
		*t = strings.TrimSpace(v)
	case *int:
		*t, err = strconv.Atoi(strings.TrimSpace(v))
	case *int64: // a size in bytes
		if *t, err = parseSize(v); err != nil {
			return fmt.Errorf("%q is not a size in bytes, such as 1048576 or 1MiB", v)
		}
	case *time.Duration:
		if *t, err = time.ParseDuration(strings.TrimSpace(v)); err != nil {
			return fmt.Errorf("%q is not a duration such as 90s, 15m or 120h", v)
		}
	}
	if err != nil {
		return fmt.Errorf("%q is not a whole number", v)
	}
	return nil
}

// parseSize reads a size in bytes: a whole number, or one with KiB, MiB or
// GiB after it.
func parseSize(v string) (int64, error) {
	v = strings.TrimSpace(v)
	num, mult := v, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil {
		return 0, err
	}
	if n > math.MaxInt64/mult || n < math.MinInt64/mult {
		return 0, strconv.ErrRange
	}
	return n * mult, nil
}

// validateNoProcessor checks HOOKSTREAM_PROCESSOR_CONCURRENCY=0: only serve
// runs without a processor, and only where processor processes can reach its
// NATS and name jobs as its intake does (the job ids depend on the key).
func (s *settings) validateNoProcessor(cmd string) error {
	switch {
	case s.JobConcurrency > 0:
		return nil
	case cmd != "serve":
		return errors.New("HOOKSTREAM_PROCESSOR_CONCURRENCY (--processor-concurrency): must be at least 1 (0, no processor, only with serve)")
	case s.NATSListen == "" || s.SecretKey == "":
		return errors.New("HOOKSTREAM_PROCESSOR_CONCURRENCY (--processor-concurrency): 0 (no processor) needs HOOKSTREAM_NATS_LISTEN, for processor processes to connect, and HOOKSTREAM_SECRET_KEY, the same on them")
	}
	return nil
}

func (s *settings) validate() error {
	switch {
	case s.Replicas < 1 || s.Replicas > 5:
		return errors.New("HOOKSTREAM_NATS_REPLICAS (--nats-replicas): must be 1 to 5")
	case s.JobMaxAttempts < 1:
		return errors.New("HOOKSTREAM_JOB_MAX_ATTEMPTS (--job-max-attempts): must be at least 1")
	case s.JobConcurrency < 0:
		return errors.New("HOOKSTREAM_PROCESSOR_CONCURRENCY (--processor-concurrency): must be at least 1 (or 0 with serve)")
	case s.NotifyConc < 1:
		return errors.New("HOOKSTREAM_NOTIFIER_CONCURRENCY (--notifier-concurrency): must be at least 1")
	case s.MaxWaits < 1:
		return errors.New("HOOKSTREAM_MAX_WAITS_PER_TENANT (--max-waits-per-tenant): must be at least 1")
	case s.MaxEndpoints < 1:
		return errors.New("HOOKSTREAM_MAX_ENDPOINTS_PER_TENANT (--max-endpoints-per-tenant): must be at least 1")
	case s.MaxInflight < 1 || s.TenantRate < 0:
		return errors.New("HOOKSTREAM_MAX_INFLIGHT (--max-inflight) must be at least 1 and HOOKSTREAM_TENANT_RATE_LIMIT (--tenant-rate-limit) not negative")
	case s.DisableAfter < time.Minute:
		return errors.New("HOOKSTREAM_DISABLE_AFTER (--disable-after): must be at least 1m")
	case s.EndpointConc < 1:
		return errors.New("HOOKSTREAM_ENDPOINT_CONCURRENCY (--endpoint-concurrency): must be at least 1")
	case s.ParkRate < 1:
		return errors.New("HOOKSTREAM_PARK_RATE (--park-rate): must be at least 1")
	case s.AttemptTimeout < time.Second:
		return errors.New("HOOKSTREAM_ATTEMPT_TIMEOUT (--attempt-timeout): must be at least 1s")
	case s.StreamMaxBytes < 1<<20:
		return errors.New("HOOKSTREAM_STREAM_MAX_BYTES (--stream-max-bytes): must be at least 1048576")
	case s.DeliveryRetention < 24*time.Hour:
		return errors.New("HOOKSTREAM_DELIVERY_RETENTION (--delivery-retention): must be at least 24h")
	case s.JobRetention < 24*time.Hour:
		return errors.New("HOOKSTREAM_JOB_RETENTION (--job-retention): must be at least 24h (Idempotency-Keys are kept that long)")
	case s.MaxBodyBytes < 1024:
		return errors.New("HOOKSTREAM_MAX_BODY_BYTES (--max-body-bytes): must be at least 1024")
	case s.MaxJSONDepth < 2:
		return errors.New("HOOKSTREAM_MAX_JSON_DEPTH (--max-json-depth): must be at least 2")
	}
	if _, _, err := s.memoryLimit(); err != nil {
		return err
	}
	listeners := []struct{ env, flag, addr string }{
		{"HOOKSTREAM_HTTP_ADDR", "http-addr", s.HTTPAddr}, {"HOOKSTREAM_NATS_LISTEN", "nats-listen", s.NATSListen},
		{"HOOKSTREAM_PPROF_ADDR", "pprof-addr", s.PprofAddr},
	}
	for _, a := range listeners {
		if err := checkListenAddr(a.addr); a.addr != "" && err != nil {
			return fmt.Errorf("%s (--%s): %w", a.env, a.flag, err)
		}
	}
	if err := checkNATSURLs(s.NATSURL); err != nil {
		return fmt.Errorf("HOOKSTREAM_NATS_URL (--nats-url): %w", err)
	}
	if s.GroupCommit != "auto" && s.GroupCommit != "on" && s.GroupCommit != "off" {
		return fmt.Errorf("HOOKSTREAM_GROUP_COMMIT (--group-commit): %q is not auto, on or off", s.GroupCommit)
	}
	if _, _, err := s.sync(); err != nil {
		return err
	}
	if _, err := s.apiKeys(); err != nil {
		return err
	}
	if s.AdminToken != "" && len(s.AdminToken) < intake.MinAPIKeyLength {
		return fmt.Errorf("HOOKSTREAM_ADMIN_TOKEN (--admin-token): use at least %d characters", intake.MinAPIKeyLength)
	}
	for _, t := range splitList(s.ExternalTypes) {
		if !contract.ValidType(t) {
			return fmt.Errorf("HOOKSTREAM_EXTERNAL_JOB_TYPES (--external-job-types): %q is not a job type (1-128 of a-z A-Z 0-9 - _ ., no empty part between dots)", t)
		}
		if t == "echo" {
			return errors.New("HOOKSTREAM_EXTERNAL_JOB_TYPES (--external-job-types): echo is built in, run by hookstream's processors; a type is run by hookstream or outside it, not both")
		}
	}
	if s.SecretKeyReplace != "yes" && s.SecretKeyReplace != "no" {
		return fmt.Errorf("HOOKSTREAM_SECRET_KEY_REPLACE (--secret-key-replace): %q is not yes or no", s.SecretKeyReplace)
	}
	if s.SecretKey != "" {
		if _, err := secretbox.ParseKey(s.SecretKey); err != nil {
			return fmt.Errorf("HOOKSTREAM_SECRET_KEY (--secret-key): %w", err)
		}
	}
	if _, err := ssrf.ParseNetworks(s.AllowedNetworks); err != nil {
		return fmt.Errorf("HOOKSTREAM_ALLOWED_CALLBACK_NETWORKS (--allowed-callback-networks): %w", err)
	}
	workers, err := s.workers()
	if err != nil {
		return err
	}
	if err := s.checkJobWindow(workers); err != nil {
		return err
	}
	if _, err := s.schedule(); err != nil {
		return err
	}
	return nil
}

// memoryLimit reads HOOKSTREAM_MEMORY_LIMIT in bytes; 0 is off or auto,
// which auto tells (setMemoryLimit sizes it).
func (s *settings) memoryLimit() (limit int64, auto bool, err error) {
	v := s.MemoryLimit
	switch v {
	case "off":
		return 0, false, nil
	case "auto":
		return 0, true, nil
	}
	n, err := parseSize(v)
	if err != nil || n < 32<<20 || n > 1<<62 {
		return 0, false, fmt.Errorf("HOOKSTREAM_MEMORY_LIMIT (--memory-limit): %q is not 'auto', 'off' or a size of at least 32MiB such as 256MiB or 1GiB", v)
	}
	return n, false, nil
}

// groupCommit reads HOOKSTREAM_GROUP_COMMIT for the command cmd.
func (s *settings) groupCommit(cmd string) bool {
	always, _, _ := s.sync()
	return s.GroupCommit == "on" || (s.GroupCommit == "auto" && cmd == "serve" && always)
}

// jobBatches reads HOOKSTREAM_GROUP_COMMIT for intake's job batches: they
// save a write and a message per job whatever the sync, so auto turns them on
// in embedded mode with a processor of its own, which knows them. Processors
// elsewhere (split mode, or serve without one) may be older, and would leave
// batches unread until they are upgraded.
func (s *settings) jobBatches(cmd string) bool {
	return s.GroupCommit == "on" || (s.GroupCommit == "auto" && cmd == "serve" && s.JobConcurrency > 0)
}

// minSyncInterval is the shortest HOOKSTREAM_JETSTREAM_SYNC interval: the
// server syncs its files that often (shorter: nearly all the time, and a
// few nanoseconds make nats-server panic).
const minSyncInterval = 10 * time.Millisecond

// sync reads HOOKSTREAM_JETSTREAM_SYNC.
func (s *settings) sync() (always bool, interval time.Duration, err error) {
	if s.JetStreamSync == "always" {
		return true, 0, nil
	}
	d, err := time.ParseDuration(s.JetStreamSync)
	if err != nil || d < minSyncInterval {
		return false, 0, fmt.Errorf("HOOKSTREAM_JETSTREAM_SYNC (--jetstream-sync): %q is neither 'always' nor an interval of at least %s such as 2m", s.JetStreamSync, minSyncInterval)
	}
	return false, d, nil
}

// apiKeys reads HOOKSTREAM_API_KEYS.
func (s *settings) apiKeys() ([]intake.APIKey, error) {
	var keys []intake.APIKey
	owner := map[string]string{}
	for pair := range strings.SplitSeq(s.APIKeys, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		tenant, key, ok := strings.Cut(pair, ":")
		switch {
		case !ok || tenant == "" || key == "":
			return nil, fmt.Errorf("HOOKSTREAM_API_KEYS (--api-keys): %q is not tenant:key", redact(pair))
		case !contract.ValidTenant(tenant) && len(tenant) >= intake.MinAPIKeyLength:
			// Written key:tenant, maybe: the "tenant" is not shown.
			return nil, errors.New("HOOKSTREAM_API_KEYS (--api-keys): an entry's tenant is not 1-64 of a-z A-Z 0-9 - _ (entries are tenant:key, in that order)")
		case !contract.ValidTenant(tenant):
			return nil, fmt.Errorf("HOOKSTREAM_API_KEYS (--api-keys): tenant %q: use 1-64 of a-z A-Z 0-9 - _", tenant)
		case len(key) < intake.MinAPIKeyLength && len(tenant) >= intake.MinAPIKeyLength:
			// Written key:tenant, maybe: the "tenant" is not shown.
			return nil, fmt.Errorf("HOOKSTREAM_API_KEYS (--api-keys): an entry's key is shorter than %d characters (entries are tenant:key, in that order)", intake.MinAPIKeyLength)
		case len(key) < intake.MinAPIKeyLength:
			return nil, fmt.Errorf("HOOKSTREAM_API_KEYS (--api-keys): the key of tenant %q is shorter than %d characters", tenant, intake.MinAPIKeyLength)
		case owner[key] != "" && owner[key] != tenant:
			return nil, fmt.Errorf("HOOKSTREAM_API_KEYS (--api-keys): tenants %q and %q have the same key; a key names one tenant", owner[key], tenant)
		case s.AdminToken != "" && key == s.AdminToken:
			return nil, fmt.Errorf("HOOKSTREAM_API_KEYS (--api-keys): the key of tenant %q is HOOKSTREAM_ADMIN_TOKEN; use another", tenant)
		}
		owner[key] = tenant
		keys = append(keys, intake.APIKey{Tenant: tenant, Key: key})
	}
	return keys, nil
}

// redact keeps secrets out of error messages: the tenant of a pair, if it
// has one; an entry without a colon may be a key alone.
func redact(pair string) string {
	tenant, _, ok := strings.Cut(pair, ":")
	if !ok || len(tenant) >= intake.MinAPIKeyLength {
		return "…"
	}
	return tenant + ":…"
}

// workers reads HOOKSTREAM_JOB_WORKERS.
func (s *settings) workers() (map[string]processor.HTTPWorker, error) {
	out := map[string]processor.HTTPWorker{}
	external := splitList(s.ExternalTypes)
	for entry := range strings.SplitSeq(s.JobWorkers, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		jobType, rest, ok := strings.Cut(entry, "=")
		rawURL, timeout, hasTimeout := strings.Cut(rest, "|")
		w := processor.HTTPWorker{URL: rawURL}
		u, err := url.Parse(rawURL)
		if !ok || jobType == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("HOOKSTREAM_JOB_WORKERS (--job-workers): the entry of %q is not type=http(s)://host/path[|timeout]", jobType)
		}
		if !contract.ValidType(jobType) {
			return nil, fmt.Errorf("HOOKSTREAM_JOB_WORKERS (--job-workers): %q is not a job type (1-128 of a-z A-Z 0-9 - _ ., no empty part between dots)", jobType)
		}
		switch _, twice := out[jobType]; {
		case twice:
			return nil, fmt.Errorf("HOOKSTREAM_JOB_WORKERS (--job-workers): %s has two workers", jobType)
		case jobType == "echo":
			return nil, errors.New("HOOKSTREAM_JOB_WORKERS (--job-workers): echo is built in; give the worker another type")
		case slices.Contains(external, jobType):
			return nil, fmt.Errorf("HOOKSTREAM_JOB_WORKERS (--job-workers): %s is in HOOKSTREAM_EXTERNAL_JOB_TYPES too; a type is run by hookstream or outside it, not both", jobType)
		}
		if hasTimeout {
			d, err := time.ParseDuration(timeout)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("HOOKSTREAM_JOB_WORKERS (--job-workers): timeout %q of %s is not a duration", timeout, jobType)
			}
			w.Timeout = d
		}
		out[jobType] = w
	}
	return out, nil
}

// checkJobWindow refuses job attempts that could outlast the jobs stream's
// retention (HOOKSTREAM_DELIVERY_RETENTION): a job waiting for its retry is
// its message alone, and a message aged out would leave the job queued for
// good. An attempt takes up to its worker's timeout, then waits up to 6
// minutes (processor.DefaultRetryDelay: 5 minutes, +20 %).
func (s *settings) checkJobWindow(workers map[string]processor.HTTPWorker) error {
	retention := s.DeliveryRetention
	if retention == 0 {
		retention = bus.DefaultDeliveryRetention
	}
	var longest time.Duration
	for _, w := range workers {
		longest = max(longest, cmp.Or(w.Timeout, processor.DefaultWorkerTimeout))
	}
	if per := 6*time.Minute + longest; int64(s.JobMaxAttempts) >= int64(retention/per) { // no overflow
		return fmt.Errorf("HOOKSTREAM_JOB_MAX_ATTEMPTS (--job-max-attempts): %d attempts of up to %s each with their retry waits reach how long the jobs stream keeps a message (HOOKSTREAM_DELIVERY_RETENTION, %s); a job waiting for its retry would be lost", s.JobMaxAttempts, per, retention)
	}
	return nil
}

// schedule reads HOOKSTREAM_RETRY_SCHEDULE.
func (s *settings) schedule() ([]time.Duration, error) {
	var out []time.Duration
	for part := range strings.SplitSeq(s.RetrySchedule, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("HOOKSTREAM_RETRY_SCHEDULE (--retry-schedule): %q is not a positive duration", part)
		}
		// A pending retry is a message in the deliveries stream: it must not
		// age out (8 days) before it fires, jitter included.
		retention := s.DeliveryRetention
		if retention == 0 {
			retention = bus.DefaultDeliveryRetention
		}
		if float64(d)*1.2 >= float64(retention) {
			return nil, fmt.Errorf("HOOKSTREAM_RETRY_SCHEDULE (--retry-schedule): %s with +20 %% jitter reaches the delivery retention (HOOKSTREAM_DELIVERY_RETENTION)", part)
		}
		out = append(out, d)
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
