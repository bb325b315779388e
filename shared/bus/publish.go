package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// direct publishes to a JetStream without options, one message at a time.
type direct struct {
	nc *nats.Conn
	// timeout applies when a publish's ctx has no deadline: the
	// JetStream's DefaultTimeout, as in nats.go.
	timeout time.Duration
}

func directTo(js jetstream.JetStream) direct {
	return direct{nc: js.Conn(), timeout: js.Options().DefaultTimeout}
}

// publish stores msg in JetStream and waits for its PubAck, as
// jetstream.JetStream's PublishMsg without options does, with the same
// errors: a request, retried on no responders (a leader election), then
// its reply read. It reads the PubAck nats-server writes for a message it
// stored without reflection; nats.go decodes every PubAck with
// encoding/json, which was half the cost of a publish in the server's CPU
// profile (docs/performance.md, finding 15).
func (d direct) publish(ctx context.Context, msg *nats.Msg) (*jetstream.PubAck, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.timeout)
		defer cancel()
	}
	resp, err := d.nc.RequestMsgWithContext(ctx, msg)
	for try := 0; errors.Is(err, nats.ErrNoResponders) && try < jetstream.DefaultPubRetryAttempts; try++ {
		t := time.NewTimer(jetstream.DefaultPubRetryWait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		resp, err = d.nc.RequestMsgWithContext(ctx, msg)
	}
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, jetstream.ErrNoStreamResponse
	case err != nil:
		return nil, err
	}
	return parsePubAck(resp.Data)
}

// The PubAck nats-server 2.x writes for a message it stored, from a
// template: {"stream":"<name>","seq":<sequence>}.
var (
	pubAckStream = []byte(`{"stream":"`)
	pubAckSeq    = []byte(`","seq":`)
)

// parsePubAck reads a publish's reply. The usual one, a stored message's
// PubAck as nats-server writes it, is read by hand; any other (an error, a
// duplicate, a domain, a batch) is decoded as nats.go does, with its
// errors.
func parsePubAck(data []byte) (*jetstream.PubAck, error) {
	if ack, ok := parsePlainPubAck(data); ok {
		return ack, nil
	}
	var reply struct { // nats.go's pubAckResponse
		Type  string              `json:"type"`
		Error *jetstream.APIError `json:"error,omitempty"`
		*jetstream.PubAck
	}
	if err := json.Unmarshal(data, &reply); err != nil {
		return nil, jetstream.ErrInvalidJSAck
	}
	if reply.Error != nil {
		return nil, fmt.Errorf("nats: %w", reply.Error)
	}
	if reply.PubAck == nil || reply.Stream == "" {
		return nil, jetstream.ErrInvalidJSAck
	}
	return reply.PubAck, nil
}

// parsePlainPubAck reads {"stream":"<name>","seq":<sequence>} exactly, with
// a stream name that needs no escaping and a sequence that fits a uint64.
func parsePlainPubAck(data []byte) (*jetstream.PubAck, bool) {
	rest, ok := bytes.CutPrefix(data, pubAckStream)
	if !ok {
		return nil, false
	}
	end := bytes.IndexByte(rest, '"')
	if end <= 0 {
		return nil, false
	}
	name := rest[:end]
	for _, c := range name {
		if c < 0x20 || c == '\\' || c >= 0x80 {
			return nil, false
		}
	}
	digits, ok := bytes.CutPrefix(rest[end:], pubAckSeq)
	if !ok || len(digits) < 2 || digits[len(digits)-1] != '}' {
		return nil, false
	}
	digits = digits[:len(digits)-1]
	if len(digits) > 20 || (digits[0] == '0' && len(digits) > 1) {
		return nil, false
	}
	var seq uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return nil, false
		}
		d := uint64(c - '0')
		if seq > (1<<64-1-d)/10 {
			return nil, false // overflows
		}
		seq = seq*10 + d
	}
	return &jetstream.PubAck{Stream: string(name), Sequence: seq}, true
}
