package notifier_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/notifier"
	"github.com/hookstream/hookstream/shared/contract"
)

// Internal services choose their event ids (Nats-Msg-Id). Whatever the id,
// a dead-lettered delivery keeps its attempt log and body, to be replayed.
func TestDeliverLogsEventsWithAnyID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		givenEventID string
	}{
		{name: "colon", givenEventID: "order:42"},
		{name: "URN", givenEventID: "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"},
		{name: "space", givenEventID: "invoice 42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, notifier.Config{Schedule: []time.Duration{}})
			rcv := newReceiver(t, statuses(500))
			b.publishEvent(t, "acme", "invoice.paid", tt.givenEventID, []byte(`{"invoice":"in_42"}`), contract.HeaderCallbackURL, rcv.URL)
			got := rcv.wait(t, 1)[0]
			b.waitIdle(t)
			var recs []contract.DeliveryRecord
			require.Eventually(t, func() bool {
				recs = b.logs(t, "acme.>")
				return len(recs) == 1
			}, 5*time.Second, 10*time.Millisecond, "no delivery record")
			require.Equal(t, got.id(), recs[0].ID)
			require.Equal(t, tt.givenEventID, recs[0].EventID)
			require.Equal(t, contract.DeliveryFailed, recs[0].Status)
			require.JSONEq(t, string(got.body), string(recs[0].Body))
		})
	}
}
