package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/bus"
	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/natstest"
)

// hookbench keys writes the keys asked for to the buckets asked for, as
// distinct keys, and refuses a bucket it does not know.
func TestFillKeys(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		bucket   string
		wantJobs uint64
		wantLogs uint64
	}{
		{"jobs", 300, 0},
		{"logs", 0, 300},
		{"both", 300, 300},
	} {
		t.Run(tt.bucket, func(t *testing.T) {
			t.Parallel()
			ns := natstest.Start(t)
			_, js := ns.Connect(t)
			ctx := context.Background()
			require.NoError(t, bus.Ensure(ctx, js, bus.Topology{}))
			var out bytes.Buffer
			require.NoError(t, fillKeys(ctx, options{natsURL: ns.ClientURL(), tenant: "bench"}, 300, tt.bucket, &out))
			require.Contains(t, out.String(), "wrote 300 keys")
			for bucket, want := range map[string]uint64{contract.BucketJobs: tt.wantJobs, contract.BucketDeliveries: tt.wantLogs} {
				s, err := js.Stream(ctx, "KV_"+bucket)
				require.NoError(t, err)
				info, err := s.Info(ctx)
				require.NoError(t, err)
				require.Equal(t, want, info.State.NumSubjects, bucket)
			}
		})
	}
	err := fillKeys(context.Background(), options{}, 1, "records", &bytes.Buffer{})
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "-bucket"), err.Error())
}
