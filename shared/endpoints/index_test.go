package endpoints

import (
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

func newTestIndex() *Index {
	return &Index{logger: slog.New(slog.DiscardHandler), byTenant: map[string]map[string]*Endpoint{}, subs: map[string]map[string]map[string]struct{}{}, wild: map[string]map[string]struct{}{}}
}

func TestIndexMatching(t *testing.T) {
	t.Parallel()
	x := newTestIndex()
	x.set("acme", "a", &Endpoint{ID: "a", Enabled: true, EventTypes: []string{"invoice.paid"}})
	x.set("acme", "b", &Endpoint{ID: "b", Enabled: true, EventTypes: []string{"invoice.*", "invoice.paid"}})
	x.set("acme", "c", &Endpoint{ID: "c", Enabled: true})
	x.set("acme", "d", &Endpoint{ID: "d", Enabled: false})
	x.set("acme", "e", &Endpoint{ID: "e", Enabled: true, EventTypes: []string{"job.*"}})
	x.set("other", "f", &Endpoint{ID: "f", Enabled: true})

	got := x.Matching("acme", "invoice.paid")
	slices.Sort(got)
	require.Equal(t, []string{"a", "b", "c"}, got, "each endpoint once, disabled and other tenants' left out")

	x.set("acme", "b", &Endpoint{ID: "b", Enabled: true, EventTypes: []string{"job.*"}}) // re-subscribed
	x.set("acme", "a", nil)                                                              // deleted
	got = x.Matching("acme", "invoice.paid")
	require.Equal(t, []string{"c"}, got)
	got = x.Matching("acme", "job.failed")
	slices.Sort(got)
	require.Equal(t, []string{"b", "c", "e"}, got)
	require.Nil(t, x.Get("acme", "a"))
}

// BenchmarkMatching10000 matches one event against a tenant with 10,000
// endpoints, a tenth of them subscribed to the event's type by a pattern.
func BenchmarkMatching10000(b *testing.B) {
	x := newTestIndex()
	for i := range 10000 {
		id := fmt.Sprintf("ep_%d", i)
		x.set("acme", id, &Endpoint{ID: id, Enabled: true, EventTypes: []string{fmt.Sprintf("type%d.*", i%10)}})
	}
	b.ReportAllocs()
	for b.Loop() {
		if n := len(x.Matching("acme", "type3.created")); n != 1000 {
			b.Fatalf("matched %d", n)
		}
	}
}

// BenchmarkMatching10000Exact: 10,000 endpoints with their own exact types,
// one of which matches.
func BenchmarkMatching10000Exact(b *testing.B) {
	x := newTestIndex()
	for i := range 10000 {
		id := fmt.Sprintf("ep_%d", i)
		x.set("acme", id, &Endpoint{ID: id, Enabled: true, EventTypes: []string{fmt.Sprintf("order.t%d", i)}})
	}
	b.ReportAllocs()
	for b.Loop() {
		if n := len(x.Matching("acme", "order.t77")); n != 1 {
			b.Fatalf("matched %d", n)
		}
	}
}

// testEntry is a key-value entry of a delete, as a watch gives it.
type testEntry struct {
	key      string
	revision uint64
}

func (e testEntry) Bucket() string                  { return "HOOKSTREAM_ENDPOINTS" }
func (e testEntry) Key() string                     { return e.key }
func (e testEntry) Value() []byte                   { return nil }
func (e testEntry) Revision() uint64                { return e.revision }
func (e testEntry) Created() time.Time              { return time.Time{} }
func (e testEntry) Delta() uint64                   { return 0 }
func (e testEntry) Operation() jetstream.KeyValueOp { return jetstream.KeyValueDelete }

// A Put of a state stored before the endpoint was deleted, arriving after
// the delete, does not bring it back; a state stored after it (the
// endpoint made again) does.
func TestIndexPutAfterDelete(t *testing.T) {
	t.Parallel()
	x := newTestIndex()
	x.Put(Endpoint{ID: "a", Tenant: "acme", Enabled: true, Revision: 5})
	x.apply(testEntry{key: Key("acme", "a"), revision: 6})
	require.Nil(t, x.Get("acme", "a"))
	x.Put(Endpoint{ID: "a", Tenant: "acme", Enabled: true, Revision: 5}) // late
	require.Nil(t, x.Get("acme", "a"))
	require.Empty(t, x.Matching("acme", "x"))
	x.Put(Endpoint{ID: "a", Tenant: "acme", Enabled: true, Revision: 7})
	require.NotNil(t, x.Get("acme", "a"))

	// A delete whose revision is not known (found gone after a new watch)
	// holds off states up to the one held.
	x.apply(testEntry{key: Key("acme", "a")})
	x.Put(Endpoint{ID: "a", Tenant: "acme", Enabled: true, Revision: 7})
	require.Nil(t, x.Get("acme", "a"))
	require.Empty(t, x.byTenant, "no maps are left for a tenant without endpoints")
	require.Empty(t, x.subs)
	require.Empty(t, x.wild)
}
