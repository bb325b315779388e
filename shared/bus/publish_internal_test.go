package bus

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// decodePubAck is how nats.go reads a PubAck: the oracle for parsePubAck.
func decodePubAck(data []byte) (*jetstream.PubAck, error) {
	var reply struct {
		Type  string              `json:"type"`
		Error *jetstream.APIError `json:"error,omitempty"`
		*jetstream.PubAck
	}
	if err := json.Unmarshal(data, &reply); err != nil {
		return nil, jetstream.ErrInvalidJSAck
	}
	if reply.Error != nil {
		return nil, reply.Error
	}
	if reply.PubAck == nil || reply.Stream == "" {
		return nil, jetstream.ErrInvalidJSAck
	}
	return reply.PubAck, nil
}

func TestParsePubAck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		reply string
		plain bool // read by hand
		want  *jetstream.PubAck
		code  jetstream.ErrorCode // an API error with this code
		err   error
	}{
		{reply: `{"stream":"HOOKSTREAM_JOBS","seq":1}`, plain: true, want: &jetstream.PubAck{Stream: "HOOKSTREAM_JOBS", Sequence: 1}},
		{reply: `{"stream":"KV_x-y","seq":18446744073709551615}`, plain: true, want: &jetstream.PubAck{Stream: "KV_x-y", Sequence: 1<<64 - 1}},
		{reply: `{"stream":"S","seq":0}`, plain: true, want: &jetstream.PubAck{Stream: "S"}},
		{reply: `{"stream":"S","seq":7,"duplicate": true}`, want: &jetstream.PubAck{Stream: "S", Sequence: 7, Duplicate: true}},
		{reply: `{"stream":"S","domain":"hub","seq":7}`, want: &jetstream.PubAck{Stream: "S", Sequence: 7, Domain: "hub"}},
		{reply: `{"stream":"S","seq":7,"val":"3"}`, want: &jetstream.PubAck{Stream: "S", Sequence: 7, Value: "3"}},
		{reply: `{"stream":"S\u0041","seq":7}`, want: &jetstream.PubAck{Stream: "SA", Sequence: 7}},
		{reply: `{"stream":"S","seq":007}`, err: jetstream.ErrInvalidJSAck},
		{reply: `{"stream":"S","seq":18446744073709551616}`, err: jetstream.ErrInvalidJSAck},
		{reply: `{"stream":"S","seq":-1}`, err: jetstream.ErrInvalidJSAck},
		{reply: `{"stream":"S","seq":}`, err: jetstream.ErrInvalidJSAck},
		{reply: `{"stream":"","seq":1}`, err: jetstream.ErrInvalidJSAck},
		{reply: `{"seq":1}`, err: jetstream.ErrInvalidJSAck},
		{reply: ``, err: jetstream.ErrInvalidJSAck},
		{reply: `{"stream":"S","seq":1}x`, err: jetstream.ErrInvalidJSAck},
		{reply: `{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 4"},"stream":"S","seq":0}`, code: 10071},
		{reply: `{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}`, code: 10077},
	} {
		t.Run(tc.reply, func(t *testing.T) {
			_, plain := parsePlainPubAck([]byte(tc.reply))
			require.Equal(t, tc.plain, plain)
			ack, err := parsePubAck([]byte(tc.reply))
			switch {
			case tc.code != 0:
				var apiErr *jetstream.APIError
				require.ErrorAs(t, err, &apiErr)
				require.Equal(t, tc.code, apiErr.ErrorCode)
			case tc.err != nil:
				require.ErrorIs(t, err, tc.err)
			default:
				require.NoError(t, err)
				require.Equal(t, tc.want, ack)
			}
		})
	}
}

// FuzzParsePubAck: whatever the reply, parsePubAck gives what nats.go's
// decoding gives.
func FuzzParsePubAck(f *testing.F) {
	for _, s := range []string{
		`{"stream":"S","seq":1}`, `{"stream":"S","seq":7,"duplicate": true}`,
		`{"stream":"S","domain":"d","seq":1}`, `{"error":{"code":400,"err_code":10071,"description":"x"}}`,
		`{"stream":"S\"","seq":1}`, `{"stream":"S","seq":99999999999999999999}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, gotErr := parsePubAck(data)
		want, wantErr := decodePubAck(data)
		if wantErr != nil {
			require.Error(t, gotErr)
			require.Equal(t, wantErr.Error(), errorsUnwrapNats(gotErr).Error())
			return
		}
		require.NoError(t, gotErr)
		require.Equal(t, want, got)
	})
}

// errorsUnwrapNats strips the "nats: " wrapping parsePubAck adds to an API
// error, as nats.go does.
func errorsUnwrapNats(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr
	}
	return err
}

// Atomic batches go only to servers that take them: 2.12 or later.
func TestVersionAtLeast(t *testing.T) {
	for version, want := range map[string]bool{
		"2.12.0": true, "2.15.2": true, "2.14.0-RC.2": true, "3.0.0": true,
		"2.11.9": false, "2.10.24": false, "1.99.0": false, "": false, "x.y": false,
	} {
		require.Equal(t, want, versionAtLeast(version, 2, 12), version)
	}
}
