package processor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/processor"
	"github.com/hookstream/hookstream/shared/secretbox"
)

// DefaultRetryDelay is 1 s doubled per failed attempt, at most 5 minutes,
// with ±20 % jitter.
func TestDefaultRetryDelay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		givenAttempt int
		wantBase     time.Duration
	}{
		{givenAttempt: 0, wantBase: time.Second},
		{givenAttempt: 1, wantBase: time.Second},
		{givenAttempt: 2, wantBase: 2 * time.Second},
		{givenAttempt: 3, wantBase: 4 * time.Second},
		{givenAttempt: 5, wantBase: 16 * time.Second},
		{givenAttempt: 9, wantBase: 256 * time.Second},
		{givenAttempt: 10, wantBase: 5 * time.Minute},
		{givenAttempt: 30, wantBase: 5 * time.Minute},
		{givenAttempt: 1000, wantBase: 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("attempt %d", tt.givenAttempt), func(t *testing.T) {
			t.Parallel()
			lo, hi := tt.wantBase*8/10, tt.wantBase*12/10
			seen := map[time.Duration]bool{}
			for range 500 {
				d := processor.DefaultRetryDelay(tt.givenAttempt)
				require.GreaterOrEqual(t, d, lo)
				require.LessOrEqual(t, d, hi)
				seen[d] = true
			}
			require.Greater(t, len(seen), 1, "the delay is jittered")
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	echo := map[string]processor.Handler{"echo": processor.Echo}
	tests := []struct {
		name      string
		given     processor.Config
		wantField string // "" means valid
	}{
		{name: "defaults are valid", given: processor.Config{Handlers: echo}},
		{name: "dotted job type", given: processor.Config{Handlers: map[string]processor.Handler{"image.resize": processor.Echo}}},
		{name: "no handlers", given: processor.Config{}, wantField: "Handlers"},
		{name: "nil handler", given: processor.Config{Handlers: map[string]processor.Handler{"echo": nil}}, wantField: "Handlers"},
		{name: "bad job type", given: processor.Config{Handlers: map[string]processor.Handler{"a>b": processor.Echo}}, wantField: "Handlers"},
		{name: "empty type part", given: processor.Config{Handlers: map[string]processor.Handler{"a..b": processor.Echo}}, wantField: "Handlers"},
		{name: "negative concurrency", given: processor.Config{Handlers: echo, Concurrency: -1}, wantField: "Concurrency"},
		{name: "negative attempts", given: processor.Config{Handlers: echo, MaxAttempts: -1}, wantField: "MaxAttempts"},
		{name: "AckWait too short", given: processor.Config{Handlers: echo, AckWait: 500 * time.Millisecond}, wantField: "AckWait"},
		{name: "no box", given: processor.Config{Handlers: echo}, wantField: "Box"},
	}
	box, err := secretbox.New(make([]byte, secretbox.KeySize))
	require.NoError(t, err)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			given := tt.given
			if tt.wantField != "Box" {
				given.Box = box
			}
			err := given.WithDefaults().Validate()
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
	cfg := processor.Config{Handlers: map[string]processor.Handler{"echo": processor.Echo}}.WithDefaults()
	require.Equal(t, processor.DefaultConcurrency, cfg.Concurrency)
	require.Equal(t, processor.DefaultMaxAttempts, cfg.MaxAttempts)
	require.Equal(t, processor.DefaultAckWait, cfg.AckWait)
	require.Equal(t, processor.DefaultShutdownGrace, cfg.ShutdownGrace)
	require.Equal(t, 7*24*time.Hour, cfg.JobRetention)
	require.NotNil(t, cfg.RetryDelay)
}

func TestEchoReturnsPayload(t *testing.T) {
	t.Parallel()
	result, err := processor.Echo.Handle(context.Background(), processor.Job{Payload: json.RawMessage(`{"a":1}`)})
	require.NoError(t, err)
	require.JSONEq(t, `{"a":1}`, string(result))
}
