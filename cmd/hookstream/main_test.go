package main

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/notifier"
)

func env(pairs ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(pairs); i += 2 {
		m[pairs[i]] = pairs[i+1]
	}
	return func(k string) string { return m[k] }
}

// The README's configuration table is exactly what the code knows.
func TestREADMEListsEverySetting(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(readme), "<!-- settings:begin -->\n")
	require.True(t, ok, "README has no settings table markers")
	table, _, ok := strings.Cut(rest, "<!-- settings:end -->")
	require.True(t, ok)
	var want bytes.Buffer
	printSettings(&want)
	require.Equal(t, want.String(), table, "README settings table is stale: paste `go run ./cmd/hookstream settings`")
}

func TestBadConfigurationNamesTheSetting(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		givenCmd  string // serve if empty
		givenEnv  []string
		givenArgs []string
		wantInErr string
	}{
		{name: "sync", givenEnv: []string{"HOOKSTREAM_JETSTREAM_SYNC", "sometimes"}, wantInErr: "HOOKSTREAM_JETSTREAM_SYNC"},
		{name: "api keys", givenEnv: []string{"HOOKSTREAM_API_KEYS", "acme"}, wantInErr: "HOOKSTREAM_API_KEYS"},
		{name: "api key not echoed", givenEnv: []string{"HOOKSTREAM_API_KEYS", "acme:"}, wantInErr: "acme:…"},
		{name: "networks", givenEnv: []string{"HOOKSTREAM_ALLOWED_CALLBACK_NETWORKS", "10.0.0.0/33"}, wantInErr: "HOOKSTREAM_ALLOWED_CALLBACK_NETWORKS"},
		{name: "workers", givenEnv: []string{"HOOKSTREAM_JOB_WORKERS", "resize=ftp://x"}, wantInErr: "HOOKSTREAM_JOB_WORKERS"},
		{name: "worker timeout", givenEnv: []string{"HOOKSTREAM_JOB_WORKERS", "resize=http://x|soon"}, wantInErr: "HOOKSTREAM_JOB_WORKERS"},
		{name: "worker without host", givenEnv: []string{"HOOKSTREAM_JOB_WORKERS", "resize=http://"}, wantInErr: "HOOKSTREAM_JOB_WORKERS"},
		{name: "worker URL with a space", givenEnv: []string{"HOOKSTREAM_JOB_WORKERS", "resize=http://images internal/resize"}, wantInErr: "HOOKSTREAM_JOB_WORKERS"},
		{name: "attempts so many they overflow", givenEnv: []string{"HOOKSTREAM_JOB_MAX_ATTEMPTS", "30000000"}, wantInErr: "HOOKSTREAM_JOB_MAX_ATTEMPTS"},
		{name: "worker URL not echoed", givenEnv: []string{"HOOKSTREAM_JOB_WORKERS", "resize=ftp://x/?token=s3cr3t"}, wantInErr: `entry of "resize"`},
		{name: "attempts outlast the jobs stream", givenEnv: []string{"HOOKSTREAM_JOB_MAX_ATTEMPTS", "300", "HOOKSTREAM_DELIVERY_RETENTION", "24h"}, wantInErr: "HOOKSTREAM_JOB_MAX_ATTEMPTS"},
		{name: "a worker's attempts outlast the jobs stream", givenEnv: []string{"HOOKSTREAM_JOB_WORKERS", "resize=http://a/1|6h", "HOOKSTREAM_DELIVERY_RETENTION", "24h"}, wantInErr: "HOOKSTREAM_JOB_MAX_ATTEMPTS"},
		{name: "one key, two tenants", givenEnv: []string{"HOOKSTREAM_API_KEYS", "alpha:0123456789abcdef0123,beta:0123456789abcdef0123"}, wantInErr: "the same key"},
		{name: "a key that is the admin token", givenEnv: []string{"HOOKSTREAM_API_KEYS", "alpha:0123456789abcdef0123", "HOOKSTREAM_ADMIN_TOKEN", "0123456789abcdef0123"}, wantInErr: "HOOKSTREAM_ADMIN_TOKEN"},
		{name: "waits per tenant", givenEnv: []string{"HOOKSTREAM_MAX_WAITS_PER_TENANT", "0"}, wantInErr: "HOOKSTREAM_MAX_WAITS_PER_TENANT"},
		{name: "worker twice", givenEnv: []string{"HOOKSTREAM_JOB_WORKERS", "resize=http://a/1,resize=http://b/2"}, wantInErr: "two workers"},
		{name: "worker for echo", givenEnv: []string{"HOOKSTREAM_JOB_WORKERS", "echo=http://a/1"}, wantInErr: "built in"},
		{name: "worker of an external type", givenEnv: []string{"HOOKSTREAM_JOB_WORKERS", "resize=http://a/1", "HOOKSTREAM_EXTERNAL_JOB_TYPES", "pdf,resize"}, wantInErr: "not both"},
		{name: "schedule", givenEnv: []string{"HOOKSTREAM_RETRY_SCHEDULE", "5s,-1m"}, wantInErr: "HOOKSTREAM_RETRY_SCHEDULE"},
		{name: "schedule past retention", givenEnv: []string{"HOOKSTREAM_RETRY_SCHEDULE", "5s,168h"}, wantInErr: "retention"},
		{name: "number", givenEnv: []string{"HOOKSTREAM_NATS_REPLICAS", "three"}, wantInErr: "HOOKSTREAM_NATS_REPLICAS"},
		{name: "replicas range", givenEnv: []string{"HOOKSTREAM_NATS_REPLICAS", "9"}, wantInErr: "HOOKSTREAM_NATS_REPLICAS"},
		{name: "retention", givenEnv: []string{"HOOKSTREAM_JOB_RETENTION", "1h"}, wantInErr: "HOOKSTREAM_JOB_RETENTION"},
		{name: "log level", givenEnv: []string{"HOOKSTREAM_LOG_LEVEL", "loud"}, wantInErr: "HOOKSTREAM_LOG_LEVEL"},
		{name: "park rate", givenEnv: []string{"HOOKSTREAM_PARK_RATE", "0"}, wantInErr: "HOOKSTREAM_PARK_RATE"},
		{name: "memory limit", givenEnv: []string{"HOOKSTREAM_MEMORY_LIMIT", "lots"}, wantInErr: "HOOKSTREAM_MEMORY_LIMIT"},
		{name: "key replace", givenEnv: []string{"HOOKSTREAM_SECRET_KEY_REPLACE", "maybe"}, wantInErr: "HOOKSTREAM_SECRET_KEY_REPLACE"},
		{name: "flag wins", givenEnv: []string{"HOOKSTREAM_ATTEMPT_TIMEOUT", "15s"}, givenArgs: []string{"--attempt-timeout", "1ms"}, wantInErr: "HOOKSTREAM_ATTEMPT_TIMEOUT (--attempt-timeout)"},
		{name: "unknown flag", givenArgs: []string{"--colour"}, wantInErr: "colour"},
		{name: "api key too short", givenEnv: []string{"HOOKSTREAM_API_KEYS", "acme:short"}, wantInErr: "HOOKSTREAM_API_KEYS"},
		{name: "api key tenant", givenEnv: []string{"HOOKSTREAM_API_KEYS", "ac.me:0123456789abcdef"}, wantInErr: "HOOKSTREAM_API_KEYS"},
		{name: "admin token too short", givenEnv: []string{"HOOKSTREAM_ADMIN_TOKEN", "short"}, wantInErr: "HOOKSTREAM_ADMIN_TOKEN"},
		{name: "worker type", givenEnv: []string{"HOOKSTREAM_JOB_WORKERS", "re size=http://x"}, wantInErr: "HOOKSTREAM_JOB_WORKERS"},
		{name: "external type", givenEnv: []string{"HOOKSTREAM_EXTERNAL_JOB_TYPES", "a..b"}, wantInErr: "HOOKSTREAM_EXTERNAL_JOB_TYPES"},
		{name: "split without key", givenCmd: "notifier", wantInErr: "HOOKSTREAM_SECRET_KEY"},
		{name: "nats token too short", givenEnv: []string{"HOOKSTREAM_NATS_TOKEN", "short"}, wantInErr: "HOOKSTREAM_NATS_TOKEN"},
		{name: "nats token not for URLs", givenEnv: []string{"HOOKSTREAM_NATS_TOKEN", "0123456789abcdef@x"}, wantInErr: "HOOKSTREAM_NATS_TOKEN"},
		{name: "ops address port", givenEnv: []string{"HOOKSTREAM_OPS_ADDR", ":99999"}, wantInErr: "HOOKSTREAM_OPS_ADDR"},
		{name: "replicas of the embedded server", givenEnv: []string{"HOOKSTREAM_NATS_REPLICAS", "3"}, wantInErr: "one node"},
		{name: "split intake without tenants", givenCmd: "intake", givenEnv: []string{"HOOKSTREAM_SECRET_KEY", testSecretKey}, wantInErr: "HOOKSTREAM_ADMIN_TOKEN"},
		// From the operator's review:
		{name: "sync too short for nats-server", givenEnv: []string{"HOOKSTREAM_JETSTREAM_SYNC", "1ns"}, wantInErr: "at least 10ms"},
		{name: "external echo", givenEnv: []string{"HOOKSTREAM_EXTERNAL_JOB_TYPES", "pdf,echo"}, wantInErr: "built in"},
		{name: "empty HTTP address", givenArgs: []string{"--http-addr="}, wantInErr: "HOOKSTREAM_HTTP_ADDR"},
		{name: "blank HTTP address", givenEnv: []string{"HOOKSTREAM_HTTP_ADDR", " "}, wantInErr: "HOOKSTREAM_HTTP_ADDR"},
		{name: "NATS on the API's port", givenEnv: []string{"HOOKSTREAM_HTTP_ADDR", "127.0.0.1:18301", "HOOKSTREAM_NATS_LISTEN", "127.0.0.1:18301"}, wantInErr: "HOOKSTREAM_NATS_LISTEN (--nats-listen): 127.0.0.1:18301 takes the port of HOOKSTREAM_HTTP_ADDR"},
		{name: "pprof on the API's port", givenEnv: []string{"HOOKSTREAM_PPROF_ADDR", ":8080"}, wantInErr: "HOOKSTREAM_PPROF_ADDR"},
		{name: "ops on the NATS listener's port", givenEnv: []string{"HOOKSTREAM_NATS_LISTEN", "127.0.0.1:18302", "HOOKSTREAM_OPS_ADDR", "127.0.0.1:18302"}, wantInErr: "HOOKSTREAM_OPS_ADDR"},
		{name: "duration named", givenEnv: []string{"HOOKSTREAM_DISABLE_AFTER", "5d"}, wantInErr: "such as 90s"},
		{name: "size named", givenEnv: []string{"HOOKSTREAM_STREAM_MAX_BYTES", "lots"}, wantInErr: "size in bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			cmd := cmp.Or(tt.givenCmd, "serve")
			code := run(append([]string{cmd}, tt.givenArgs...), env(tt.givenEnv...), &stdout, &stderr)
			require.Equal(t, 2, code, stderr.String())
			require.Contains(t, stderr.String(), tt.wantInErr)
		})
	}
}

// In split mode HOOKSTREAM_NATS_TOKEN is the NATS server's own token, which
// hookstream passes as a token, never in a URL: it may be any string.
func TestSplitModeTakesTheServersToken(t *testing.T) {
	t.Parallel()
	_, err := parseSettings("processor", nil, env("HOOKSTREAM_SECRET_KEY", testSecretKey, "HOOKSTREAM_NATS_TOKEN", "Zm9vYmFyYmF6cXV4+/8="), &bytes.Buffer{})
	require.NoError(t, err)
}

// HOOKSTREAM_PROCESSOR_CONCURRENCY=0 runs serve without a processor, where
// processor processes can connect and share its key, and without job
// batches unless asked for (those processors may be older); a processor
// process must run some jobs.
func TestProcessorConcurrencyZero(t *testing.T) {
	t.Parallel()
	const key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	for _, tt := range []struct {
		name, givenCmd string
		givenEnv       []string
		wantInErr      string
	}{
		{name: "serve", givenCmd: "serve", givenEnv: []string{"HOOKSTREAM_NATS_LISTEN", "127.0.0.1:4222", "HOOKSTREAM_SECRET_KEY", key}},
		{name: "no listener", givenCmd: "serve", givenEnv: []string{"HOOKSTREAM_SECRET_KEY", key}, wantInErr: "HOOKSTREAM_NATS_LISTEN"},
		{name: "no shared key", givenCmd: "serve", givenEnv: []string{"HOOKSTREAM_NATS_LISTEN", "127.0.0.1:4222"}, wantInErr: "HOOKSTREAM_SECRET_KEY"},
		{name: "processor", givenCmd: "processor", givenEnv: []string{"HOOKSTREAM_SECRET_KEY", key}, wantInErr: "only with serve"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			givenEnv := env(append([]string{"HOOKSTREAM_PROCESSOR_CONCURRENCY", "0"}, tt.givenEnv...)...)
			s, err := parseSettings(tt.givenCmd, nil, givenEnv, &bytes.Buffer{})
			if tt.wantInErr != "" {
				require.ErrorContains(t, err, tt.wantInErr)
				var stdout, stderr bytes.Buffer
				require.Equal(t, 2, run([]string{tt.givenCmd}, givenEnv, &stdout, &stderr))
				require.Contains(t, stderr.String(), "HOOKSTREAM_PROCESSOR_CONCURRENCY")
				return
			}
			require.NoError(t, err)
			c, err := buildConfigs(tt.givenCmd, s)
			require.NoError(t, err)
			require.True(t, c.noProcessor)
			require.False(t, c.intake.JobBatches, "processors elsewhere may not know job batches")
		})
	}
	var stdout, stderr bytes.Buffer
	require.Equal(t, 2, run([]string{"serve"}, env("HOOKSTREAM_PROCESSOR_CONCURRENCY", "-1"), &stdout, &stderr))
}

func TestUnknownCommand(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	require.Equal(t, 2, run([]string{"frobnicate"}, env(), &stdout, &stderr))
	require.Contains(t, stderr.String(), "unknown command")
}

func TestSettingsDefaultsAreValid(t *testing.T) {
	t.Parallel()
	s, err := parseSettings("serve", nil, env(), &bytes.Buffer{})
	require.NoError(t, err)
	c, err := buildConfigs("serve", s)
	require.NoError(t, err)
	require.Contains(t, c.intake.JobTypes, "echo")
	require.Len(t, c.notifier.Schedule, 9)
	always, _, err := s.sync()
	require.NoError(t, err)
	require.True(t, always, "the embedded default syncs every write")
	require.True(t, c.intake.GroupCommit && c.processor.GroupCommit && c.notifier.GroupCommit, "group commits where every write is synced")
	require.Equal(t, notifier.DefaultParkRate, c.notifier.ParkRate, "HOOKSTREAM_PARK_RATE's default is the notifier's")
}

// Group commits are on where they pay: where every write is synced to disk.
// Job batches pay whatever the sync, and are on by default where every
// processor is of this version: in embedded mode.
func TestGroupCommitFollowsSync(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		givenCmd, givenSync, givenGroupCommit string
		want, wantJobBatches                  bool
	}{
		{"serve", "always", "auto", true, true},
		{"serve", "2m", "auto", false, true},
		{"intake", "always", "auto", false, false},
		{"intake", "always", "on", true, true},
		{"notifier", "always", "on", true, true},
		{"serve", "always", "off", false, false},
	} {
		s, err := parseSettings(tt.givenCmd, nil, env("HOOKSTREAM_JETSTREAM_SYNC", tt.givenSync, "HOOKSTREAM_GROUP_COMMIT", tt.givenGroupCommit,
			"HOOKSTREAM_SECRET_KEY", testSecretKey, "HOOKSTREAM_ADMIN_TOKEN", "admin-token-0123456789"), &bytes.Buffer{})
		require.NoError(t, err)
		require.Equal(t, tt.want, s.groupCommit(tt.givenCmd), "%+v", tt)
		require.Equal(t, tt.wantJobBatches, s.jobBatches(tt.givenCmd), "job batches %+v", tt)
	}
	_, err := parseSettings("serve", nil, env("HOOKSTREAM_GROUP_COMMIT", "sometimes"), &bytes.Buffer{})
	require.ErrorContains(t, err, "HOOKSTREAM_GROUP_COMMIT")
}

// HOOKSTREAM_MEMORY_LIMIT takes bytes, KiB, MiB or GiB from 32 MiB on,
// 'auto' or 'off'; anything else names the variable.
func TestMemoryLimitSetting(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		given    string
		want     int64
		wantAuto bool
	}{
		{"", 0, true}, // the default, sized by setMemoryLimit
		{"auto", 0, true},
		{"off", 0, false},
		{"512MiB", 512 << 20, false},
		{"1GiB", 1 << 30, false},
		{"65536KiB", 64 << 20, false},
		{"104857600", 100 << 20, false},
		{"104857600B", 100 << 20, false},
		{"32MiB", 32 << 20, false}, // the least
		{" 1GiB ", 1 << 30, false},
	} {
		s, err := parseSettings("serve", nil, env("HOOKSTREAM_MEMORY_LIMIT", tt.given), &bytes.Buffer{})
		require.NoError(t, err, tt.given)
		got, auto, err := s.memoryLimit()
		require.NoError(t, err, tt.given)
		require.Equal(t, tt.want, got, tt.given)
		require.Equal(t, tt.wantAuto, auto, tt.given)
	}
	for _, bad := range []string{"lots", "256MB", "-1", "0", "1MiB", "33554431", "OFF", "AUTO", "1TiB", "9999999999GiB"} {
		_, err := parseSettings("serve", nil, env("HOOKSTREAM_MEMORY_LIMIT", bad), &bytes.Buffer{})
		require.ErrorContains(t, err, "HOOKSTREAM_MEMORY_LIMIT", bad)
	}
}

// The setting becomes the runtime's soft memory limit, 'auto' 80 % of the
// memory available, unless GOMEMLIMIT is set: then the runtime's own
// reading of it stays. Not parallel: the limit is the process's.
func TestMemoryLimitApplied(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	logger := slog.New(slog.DiscardHandler)
	fixed, err := parseSettings("serve", nil, env("HOOKSTREAM_MEMORY_LIMIT", "300MiB"), &bytes.Buffer{})
	require.NoError(t, err)
	auto, err := parseSettings("serve", nil, env(), &bytes.Buffer{})
	require.NoError(t, err)
	available := func() int64 { return 10 << 30 }
	unknown := func() int64 { return 0 }

	debug.SetMemoryLimit(math.MaxInt64) // whatever the test process was started with
	setMemoryLimit(fixed, env(), available, logger)
	require.Equal(t, int64(300<<20), debug.SetMemoryLimit(-1))

	setMemoryLimit(auto, env(), available, logger)
	require.Equal(t, int64(8<<30), debug.SetMemoryLimit(-1), "auto: 80 % of the memory available")

	debug.SetMemoryLimit(math.MaxInt64)
	setMemoryLimit(auto, env(), unknown, logger)
	require.Equal(t, int64(math.MaxInt64), debug.SetMemoryLimit(-1), "auto, memory available unknown: no limit")

	debug.SetMemoryLimit(prev)
	setMemoryLimit(fixed, env("GOMEMLIMIT", "1GiB"), available, logger)
	setMemoryLimit(auto, env("GOMEMLIMIT", "1GiB"), available, logger)
	require.Equal(t, prev, debug.SetMemoryLimit(-1), "GOMEMLIMIT wins")
}

// availableMemory reads this machine's memory: more than nothing, and not
// more than /proc/meminfo's total.
func TestAvailableMemory(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Skip("no /proc/meminfo here")
	}
	var kib int64
	_, err = fmt.Sscanf(string(b), "MemTotal: %d kB", &kib)
	require.NoError(t, err)
	got := availableMemory()
	require.Positive(t, got)
	require.LessOrEqual(t, got, kib<<10)
}

// availableMemoryIn takes the least of the host's memory and the limits of
// the process's cgroup and every parent, in cgroup v2 and v1 layouts;
// "max", v1's "unlimited" number and missing files are no limit.
func TestAvailableMemoryIn(t *testing.T) {
	t.Parallel()
	const meminfo = "MemTotal:       16384000 kB\nMemFree:         1000 kB\n"
	host := int64(16384000) << 10
	for _, tt := range []struct {
		name  string
		files map[string]string
		want  int64
	}{
		{"nothing readable", nil, 0},
		{"host only", map[string]string{"proc/meminfo": meminfo}, host},
		{"v2, the process's own cgroup", map[string]string{
			"proc/meminfo":                          meminfo,
			"proc/self/cgroup":                      "0::/system.slice/hookstream.service\n",
			"sys/fs/cgroup/memory.max":              "max\n",
			"sys/fs/cgroup/system.slice/memory.max": "max\n",
			"sys/fs/cgroup/system.slice/hookstream.service/memory.max": "536870912\n",
		}, 512 << 20},
		{"v2, a parent's lower limit", map[string]string{
			"proc/meminfo":                               meminfo,
			"proc/self/cgroup":                           "0::/kubepods/pod1/ctr\n",
			"sys/fs/cgroup/kubepods/pod1/memory.max":     "268435456\n",
			"sys/fs/cgroup/kubepods/pod1/ctr/memory.max": "1073741824\n",
		}, 256 << 20},
		{"v2, a namespace's root", map[string]string{
			"proc/meminfo":             meminfo,
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "2147483648\n",
		}, 2 << 30},
		{"v2, no limit anywhere", map[string]string{
			"proc/meminfo":               meminfo,
			"proc/self/cgroup":           "0::/a\n",
			"sys/fs/cgroup/memory.max":   "max\n",
			"sys/fs/cgroup/a/memory.max": "max\n",
		}, host},
		{"v1, the memory controller's line", map[string]string{
			"proc/meminfo":     meminfo,
			"proc/self/cgroup": "12:cpu,cpuacct:/docker/x\n4:memory:/docker/x\n1:name=systemd:/docker/x\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes":               "9223372036854771712\n",
			"sys/fs/cgroup/memory/docker/x/memory.limit_in_bytes":      "805306368\n",
			"sys/fs/cgroup/cpu,cpuacct/docker/x/memory.limit_in_bytes": "1\n",
		}, 768 << 20},
		{"v1, unlimited", map[string]string{
			"proc/meminfo":     meminfo,
			"proc/self/cgroup": "4:memory:/\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
		}, host},
		{"a cgroup limit, no meminfo", map[string]string{
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "1073741824\n",
		}, 1 << 30},
	} {
		root := t.TempDir()
		for name, content := range tt.files {
			p := filepath.Join(root, name)
			require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
			require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
		}
		require.Equal(t, tt.want, availableMemoryIn(root), tt.name)
	}
}

// Usage text, printed for -h or a mistyped flag, never shows the values
// the environment gives (keys, tokens, NATS credentials); a flag still wins
// over its variable.
func TestUsageShowsNoSecrets(t *testing.T) {
	t.Parallel()
	given := env("HOOKSTREAM_ADMIN_TOKEN", "supersecretadmintoken123", "HOOKSTREAM_API_KEYS", "acme:acme-secret-key-0123456789",
		"HOOKSTREAM_NATS_URL", "nats://user:hunter2password@nats:4222")
	var usage bytes.Buffer
	_, err := parseSettings("intake", []string{"--htp-addr=:1"}, given, &usage)
	require.Error(t, err)
	for _, secret := range []string{"supersecretadmintoken123", "acme-secret-key", "hunter2password"} {
		require.NotContains(t, usage.String(), secret)
	}
	s, err := parseSettings("serve", []string{"--admin-token=from-the-flag-0123456789"}, given, &bytes.Buffer{})
	require.NoError(t, err)
	require.Equal(t, "from-the-flag-0123456789", s.AdminToken)
	s, err = parseSettings("serve", nil, given, &bytes.Buffer{})
	require.NoError(t, err)
	require.Equal(t, "supersecretadmintoken123", s.AdminToken)
}

// Listen addresses and NATS URLs that cannot work are refused before
// anything starts (exit 2, the setting named), without the credentials a
// URL carries.
func TestBadAddressesExit2(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ cmd, name, value string }{
		{"serve", "HOOKSTREAM_HTTP_ADDR", "foo"},
		{"serve", "HOOKSTREAM_NATS_LISTEN", "bogus"},
		{"serve", "HOOKSTREAM_PPROF_ADDR", "127.0.0.1:http"},
		{"notifier", "HOOKSTREAM_NATS_URL", "nats://svc:hunter2pw@nats-0:4222, nats://svc:hunter2pw@nats-1:42x22"},
	} {
		var stdout, stderr bytes.Buffer
		given := env(tt.name, tt.value, "HOOKSTREAM_SECRET_KEY", base64.StdEncoding.EncodeToString(make([]byte, 32)))
		require.Equal(t, 2, run([]string{tt.cmd}, given, &stdout, &stderr), tt.name)
		require.Contains(t, stderr.String(), tt.name)
		require.NotContains(t, stderr.String(), "hunter2pw")
	}
}

// An API key written without its tenant, or before it, is not echoed in
// the error (found by review: it was, in full).
func TestAPIKeyWrittenWrongIsNotEchoed(t *testing.T) {
	t.Parallel()
	for _, given := range []string{"hs_SECRETKEY0123456789", "hs_SECRETKEY0123456789:acme", "hs/SECRETKEY0123456789+=:acme"} {
		var stdout, stderr bytes.Buffer
		require.Equal(t, 2, run([]string{"serve"}, env("HOOKSTREAM_API_KEYS", given), &stdout, &stderr))
		require.Contains(t, stderr.String(), "HOOKSTREAM_API_KEYS")
		require.NotContains(t, stderr.String(), "SECRETKEY", given)
	}
}

// Sizes take KiB, MiB and GiB, as HOOKSTREAM_MEMORY_LIMIT does.
func TestParseSize(t *testing.T) {
	t.Parallel()
	for given, want := range map[string]int64{"1048576": 1 << 20, "1MiB": 1 << 20, " 2GiB ": 2 << 30, "512KiB": 512 << 10, "10B": 10} {
		got, err := parseSize(given)
		require.NoError(t, err, given)
		require.Equal(t, want, got, given)
	}
	for _, given := range []string{"1GB", "lots", "", "9999999999GiB"} {
		_, err := parseSize(given)
		require.Error(t, err, given)
	}
}
