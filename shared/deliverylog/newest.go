package deliverylog

import (
	"container/heap"
	"context"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookstream/hookstream/shared/contract"
)

// ReadNewest is Read, without bodies, of the newest n records that keep
// passes (by creation, then id), newest first: a page of the log, in memory
// bounded by a few times n whatever the log holds since.
//
// It keeps twice n at first, and records fall out as newer ones come. A
// kept record written again during the read that no longer passes keep
// leaves a place that a record fallen out earlier may have had a right to,
// so only the records newer than every one that fell out are sure. Should
// fewer than n be, the read starts over keeping four times as many.
func ReadNewest(ctx context.Context, js jetstream.JetStream, filter Filter, since time.Time, keep func(*contract.DeliveryRecord) bool, n int) ([]contract.DeliveryRecord, error) {
	for capacity := 2 * n; ; capacity *= 4 {
		kept := newestSet{capacity: capacity, byKey: map[string]*newestEntry{}}
		if err := readLatest(ctx, js, filter, since, keep, false, kept.put, kept.remove); err != nil {
			return nil, err
		}
		out := make([]contract.DeliveryRecord, 0, len(kept.entries))
		for _, e := range kept.entries {
			if kept.floor == nil || compare(e.rec, *kept.floor) > 0 {
				out = append(out, e.rec)
			}
		}
		if kept.floor == nil || len(out) >= n {
			slices.SortFunc(out, func(a, b contract.DeliveryRecord) int { return compare(b, a) })
			return out[:min(n, len(out))], nil
		}
	}
}

// newestSet keeps the newest records by key, up to capacity, in a heap
// whose top is the oldest of them.
type newestSet struct {
	capacity int
	entries  []*newestEntry
	byKey    map[string]*newestEntry
	// floor is the newest record that fell out; nil while none did.
	floor *contract.DeliveryRecord
}

type newestEntry struct {
	key   string
	rec   contract.DeliveryRecord
	index int
}

func (s *newestSet) put(key string, rec contract.DeliveryRecord) {
	if e := s.byKey[key]; e != nil {
		e.rec = rec
		heap.Fix(s, e.index)
	} else {
		e = &newestEntry{key: key, rec: rec}
		s.byKey[key] = e
		heap.Push(s, e)
	}
	if len(s.entries) > s.capacity {
		out := heap.Pop(s).(*newestEntry)
		if s.floor == nil || compare(out.rec, *s.floor) > 0 {
			s.floor = &out.rec
		}
	}
}

func (s *newestSet) remove(key string) {
	if e := s.byKey[key]; e != nil {
		heap.Remove(s, e.index)
	}
}

// heap.Interface, the oldest record on top.
func (s *newestSet) Len() int           { return len(s.entries) }
func (s *newestSet) Less(i, j int) bool { return compare(s.entries[i].rec, s.entries[j].rec) < 0 }
func (s *newestSet) Swap(i, j int) {
	s.entries[i], s.entries[j] = s.entries[j], s.entries[i]
	s.entries[i].index, s.entries[j].index = i, j
}
func (s *newestSet) Push(x any) {
	e := x.(*newestEntry)
	e.index = len(s.entries)
	s.entries = append(s.entries, e)
}
func (s *newestSet) Pop() any {
	last := len(s.entries) - 1
	e := s.entries[last]
	s.entries = s.entries[:last]
	delete(s.byKey, e.key)
	return e
}
