package notifier

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/contract"
)

// encodeFitting leaves out the oldest responses first, only as many as it
// must, and never changes the caller's attempts.
func TestEncodeFitting(t *testing.T) {
	page := strings.Repeat("<", 1000)
	d := contract.Delivery{ID: "msg_1", Body: json.RawMessage(`{"a":"<>"}`),
		Attempts: []contract.Attempt{{StatusCode: 500, Response: page}, {StatusCode: 500, Response: page}, {StatusCode: 500, Response: page}}}

	data, err := encodeFitting(&d, &d.Attempts, 1<<20)
	require.NoError(t, err)
	require.Contains(t, string(data), `{"a":"<>"}`, "no HTML escapes")
	require.Equal(t, 3, strings.Count(string(data), page))

	data, err = encodeFitting(&d, &d.Attempts, len(data)-1000)
	require.NoError(t, err)
	var got contract.Delivery
	require.NoError(t, json.Unmarshal(data, &got))
	require.Len(t, got.Attempts, 3)
	require.Empty(t, got.Attempts[0].Response, "the oldest response goes first")
	require.Equal(t, page, got.Attempts[1].Response)
	require.Equal(t, page, got.Attempts[2].Response)

	_, err = encodeFitting(&d, &d.Attempts, 100)
	require.ErrorIs(t, err, errTooLarge)
	for _, a := range d.Attempts {
		require.Equal(t, page, a.Response, "the caller's attempts are unchanged")
	}
}
