package endpoints_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/endpoints"
)

func TestMatchType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		givenPattern string
		givenType    string
		want         bool
	}{
		{"job.succeeded", "job.succeeded", true},
		{"job.succeeded", "job.failed", false},
		{"job.*", "job.failed", true},
		{"job.*", "job", false},
		{"job.*", "job.a.b", false},
		{"invoice.>", "invoice.paid", true},
		{"invoice.>", "invoice.paid.late", true},
		{"invoice.>", "invoice", false},
		{"*.paid", "invoice.paid", true},
		{">", "anything.at.all", true},
		{"a.*.c", "a.b.c", true},
		{"a.*.c", "a.b.d", false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, endpoints.MatchType(tt.givenPattern, tt.givenType), "%s ~ %s", tt.givenPattern, tt.givenType)
	}
}

func TestValidPattern(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"job.*", "invoice.>", ">", "a.b.c", "*"} {
		require.True(t, endpoints.ValidPattern(ok), ok)
	}
	// Tokens of other characters than an event type's could never match.
	for _, bad := range []string{"", "a..b", ">.a", "a.b*", "a b", "invoice/paid", "Invoice:Paid", "job.succeeded\n", "café.paid", "job.succeeded,job.failed", "a.\x00"} {
		require.False(t, endpoints.ValidPattern(bad), bad)
	}
}

func TestEmptySubscriptionMatchesAll(t *testing.T) {
	t.Parallel()
	ep := endpoints.Endpoint{}
	require.True(t, ep.Matches("anything"))
	ep.EventTypes = []string{"job.*"}
	require.False(t, ep.Matches("invoice.paid"))
}

func FuzzMatchType(f *testing.F) {
	f.Add("a.*.>", "a.b.c.d")
	f.Fuzz(func(t *testing.T, pattern, eventType string) {
		_ = endpoints.MatchType(pattern, eventType)
	})
}

func TestReservedHeader(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"content-encoding", "Content-Type", "WEBHOOK-SIGNATURE", "te", "Transfer-Encoding"} {
		require.True(t, endpoints.ReservedHeader(name), name)
	}
	for _, name := range []string{"Authorization", "X-Team", "Cookie"} {
		require.False(t, endpoints.ReservedHeader(name), name)
	}
}
