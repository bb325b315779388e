package notifier_test

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/services/notifier"
	"github.com/hookstream/hookstream/shared/contract"
)

// A tenant's event types are recorded up to MaxEventTypes, those recorded
// before this process started included: each is a record kept until the
// tenant is deleted, and GET /v1/event-types lists them whole (5,000 types
// of 4 KiB examples made a 21 MB answer, from the security review). Events
// of later types are delivered all the same.
func TestEventTypesRecordedPerTenantAreBounded(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, nil)
	b := setup(t, notifier.Config{MaxEventTypes: 3}, newEndpoint(t, "acme", "ep_all", rcv.URL))
	ctx := t.Context()
	tenants, err := b.js.KeyValue(ctx, contract.BucketTenants)
	require.NoError(t, err)
	_, err = tenants.Create(ctx, notifier.EventTypeKey("acme", "old.one"), []byte(`{"type":"old.one"}`))
	require.NoError(t, err)
	for i := range 5 {
		b.publishEvent(t, "acme", "kind"+strconv.Itoa(i)+".happened", "evt_"+strconv.Itoa(i), []byte(`{}`))
	}
	rcv.wait(t, 5)
	b.waitIdle(t)
	keys, err := tenants.ListKeysFiltered(ctx, notifier.EventTypeKey("acme", ">"))
	require.NoError(t, err)
	var recorded []string
	for k := range keys.Keys() {
		recorded = append(recorded, k)
	}
	require.Len(t, recorded, 3, "the one recorded before, and two more: %v", recorded)
}
