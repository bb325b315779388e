package bus

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// pulledMsg is a message a puller received: the jetstream.Msg that handlers
// settle. Its acks are nats.go's on the message itself (published to its
// reply subject, as jetstream's are); like jetstream's, a message settles
// once, and settling it again returns jetstream.ErrMsgAlreadyAckd.
type pulledMsg struct {
	msg     *nats.Msg
	settled atomic.Bool
}

var _ jetstream.Msg = (*pulledMsg)(nil)

func (m *pulledMsg) Data() []byte         { return m.msg.Data }
func (m *pulledMsg) Headers() nats.Header { return m.msg.Header }
func (m *pulledMsg) Subject() string      { return m.msg.Subject }
func (m *pulledMsg) Reply() string        { return m.msg.Reply }

// Metadata is parsed from the reply subject.
func (m *pulledMsg) Metadata() (*jetstream.MsgMetadata, error) {
	md, err := m.msg.Metadata()
	if err != nil {
		return nil, err
	}
	return &jetstream.MsgMetadata{
		Sequence:     jetstream.SequencePair{Consumer: md.Sequence.Consumer, Stream: md.Sequence.Stream},
		NumDelivered: md.NumDelivered, NumPending: md.NumPending, Timestamp: md.Timestamp,
		Stream: md.Stream, Consumer: md.Consumer, Domain: md.Domain,
	}, nil
}

func (m *pulledMsg) Ack() error { return m.settle(func() error { return m.msg.Ack() }) }
func (m *pulledMsg) Nak() error { return m.settle(func() error { return m.msg.Nak() }) }
func (m *pulledMsg) Term() error {
	return m.settle(func() error { return m.msg.Term() })
}

// DoubleAck waits for the server to confirm the ack, 5 s at most when ctx
// has no deadline, as jetstream's does.
func (m *pulledMsg) DoubleAck(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	return m.settle(func() error { return m.msg.AckSync(nats.Context(ctx)) })
}

func (m *pulledMsg) NakWithDelay(delay time.Duration) error {
	return m.settle(func() error { return m.msg.NakWithDelay(delay) })
}

func (m *pulledMsg) TermWithReason(reason string) error {
	return m.settle(func() error { return m.msg.Respond([]byte("+TERM " + reason)) })
}

// InProgress resets the message's ack wait; it may be sent many times, until
// the message is settled.
func (m *pulledMsg) InProgress() error {
	if m.settled.Load() {
		return jetstream.ErrMsgAlreadyAckd
	}
	return m.msg.InProgress()
}

// settle sends one ack of the message, once.
func (m *pulledMsg) settle(send func() error) error {
	if !m.settled.CompareAndSwap(false, true) {
		return jetstream.ErrMsgAlreadyAckd
	}
	if err := send(); err != nil {
		m.settled.Store(false)
		if errors.Is(err, nats.ErrMsgAlreadyAckd) {
			return jetstream.ErrMsgAlreadyAckd
		}
		return err
	}
	return nil
}
