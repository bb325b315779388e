package notifier_test

import (
	"runtime/debug"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/notifier"
	"github.com/hookstream/hookstream/shared/secretbox"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	box, err := secretbox.New(make([]byte, secretbox.KeySize))
	require.NoError(t, err)
	valid := notifier.Config{Guard: loopback, Box: box}
	with := func(change func(*notifier.Config)) notifier.Config {
		c := valid
		change(&c)
		return c
	}
	tests := []struct {
		name      string
		given     notifier.Config
		wantField string // empty: valid
	}{
		{name: "defaults are valid", given: valid},
		{name: "no retries is valid", given: with(func(c *notifier.Config) { c.Schedule = []time.Duration{} })},
		{name: "no guard", given: with(func(c *notifier.Config) { c.Guard = nil }), wantField: "Guard"},
		{name: "no box", given: with(func(c *notifier.Config) { c.Box = nil }), wantField: "Box"},
		{name: "zero wait", given: with(func(c *notifier.Config) { c.Schedule = []time.Duration{time.Second, 0} }), wantField: "Schedule: wait 2"},
		{name: "jitter of 1", given: with(func(c *notifier.Config) { c.Jitter = 1 }), wantField: "Jitter"},
		{name: "negative jitter", given: with(func(c *notifier.Config) { c.Jitter = -0.1 }), wantField: "Jitter"},
		{name: "attempt timeout under 1s", given: with(func(c *notifier.Config) { c.AttemptTimeout = time.Millisecond }), wantField: "AttemptTimeout"},
		{name: "negative concurrency", given: with(func(c *notifier.Config) { c.Concurrency = -1 }), wantField: "Concurrency"},
		{name: "negative InProcessMax", given: with(func(c *notifier.Config) { c.InProcessMax = -time.Second }), wantField: "InProcessMax"},
		{name: "negative MaxRetryAfter", given: with(func(c *notifier.Config) { c.MaxRetryAfter = -time.Second }), wantField: "MaxRetryAfter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.given.WithDefaults().Validate()
			if tt.wantField == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.wantField, "the error names the field")
		})
	}
}

func TestConfigWithDefaults(t *testing.T) {
	t.Parallel()
	cfg := notifier.Config{}.WithDefaults()
	require.Equal(t, notifier.DefaultSchedule, cfg.Schedule)
	require.Equal(t, []time.Duration{
		5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour,
		10 * time.Hour, 14 * time.Hour, 20 * time.Hour, 24 * time.Hour,
	}, cfg.Schedule, "the schedule of DESIGN.md")
	require.Equal(t, notifier.DefaultJitter, cfg.Jitter)
	require.Equal(t, 15*time.Second, cfg.AttemptTimeout)
	require.Equal(t, notifier.DefaultInProcessMax, cfg.InProcessMax)
	require.Equal(t, notifier.DefaultMaxRetryAfter, cfg.MaxRetryAfter)
	require.Equal(t, notifier.DefaultConcurrency, cfg.Concurrency)
	require.Equal(t, "hookstream/"+notifier.Version, cfg.UserAgent)
	require.NotNil(t, cfg.Now)
}

func TestBuildVersion(t *testing.T) {
	t.Parallel()
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	for _, c := range []struct {
		info *debug.BuildInfo
		ok   bool
		want string
	}{
		{nil, false, "dev"},
		{&debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, true, "v1.4.0"},
		{&debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261201100405-13c9d7b1a2b3+dirty"}}, true, "v0.0.0-20261201100405-13c9d7b1a2b3+dirty"},
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("13c9d7b1a2b3c4d5e6f7", "false")}, true, "13c9d7b1a2b3"},
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("13c9d7b", "true")}, true, "13c9d7b+dirty"},
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true, "dev"},
	} {
		require.Equal(t, c.want, notifier.BuildVersion(c.info, c.ok))
	}
}
