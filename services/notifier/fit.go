package notifier

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/hookstream/hookstream/shared/contract"
)

// A delivery travels whole in every message that carries it: its body and
// its attempts, each attempt with up to MaxResponseBytes of the receiver's
// answer. Those messages must fit in the NATS server's max_payload, or the
// delivery could neither be retried nor recorded.
const (
	// headerRoom is what a message's headers may take beside its data.
	headerRoom = 1 << 10
	// deliveryRoom is what a delivery message needs beside its webhook
	// body: its other fields and its attempts without their responses.
	// An event whose body leaves less is dead-lettered at fan-out.
	deliveryRoom = 8 << 10
)

// errTooLarge is a delivery that does not fit in a NATS message, even with
// its attempts' responses left out.
var errTooLarge = errors.New("larger than the NATS server takes in a message")

// maxData is the largest data of a message on the notifier's connection.
func (n *Notifier) maxData() int {
	return int(n.js.Conn().MaxPayload()) - headerRoom
}

// encodeFitting encodes v, which holds *attempts, in at most limit bytes:
// without HTML escapes (a response's "<" stays one byte, not six), and with
// the responses of the oldest attempts left out while it is larger. The
// attempt log keeps what an earlier round recorded only until it is written
// again from a message that left it out. *attempts is as it was on return.
func encodeFitting(v any, attempts *[]contract.Attempt, limit int) ([]byte, error) {
	kept := *attempts
	defer func() { *attempts = kept }()
	cloned := false
	next := 0 // the oldest attempt whose response may still be left out
	for {
		data, err := encodeJSON(v)
		if err != nil || len(data) <= limit {
			return data, err
		}
		for next < len(*attempts) && (*attempts)[next].Response == "" {
			next++
		}
		if next == len(*attempts) {
			return nil, fmt.Errorf("%w (%d bytes, at most %d)", errTooLarge, len(data), limit)
		}
		if !cloned {
			*attempts, cloned = slices.Clone(kept), true // the caller's stay as they are
		}
		(*attempts)[next].Response = ""
	}
}

// encodeJSON is json.Marshal without HTML escapes.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
