package jobevents_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/contract"
	"github.com/hookstream/hookstream/shared/jobevents"
)

// JobOf reads back the job of every event id EventID gives, and of no other.
func TestJobOf(t *testing.T) {
	t.Parallel()
	for _, job := range []string{"job_x", "x", "job_a_succeeded", "a_running_3", "job_1_2"} {
		for _, status := range []string{contract.StatusSucceeded, contract.StatusFailed, contract.StatusCanceled} {
			got, ok := jobevents.JobOf(jobevents.EventID(job, status))
			require.True(t, ok, "%s %s", job, status)
			require.Equal(t, job, got)
		}
		got, ok := jobevents.JobOf(jobevents.EventID(job, contract.StatusRunning) + "_12")
		require.True(t, ok, "%s running", job)
		require.Equal(t, job, got)
	}
	for _, id := range []string{"evt_", "evt__succeeded", "evt-x", "evt-x_2", "evt-x_succeeded_2", "inv_succeeded", "evt_x_queued", "x"} {
		_, ok := jobevents.JobOf(id)
		require.False(t, ok, id)
	}
}
