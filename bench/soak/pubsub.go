package soak

import (
	"errors"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// publishInterval paces the publisher: Pub/Sub is checked for delivery
// through failovers, not loaded.
const publishInterval = 5 * time.Millisecond

// soakChannel is the channel the publisher and the subscriber use.
const soakChannel = "soak:events"

// PubSubReport is what the subscriber received of what was published.
// The proxy documents that messages published while a subscription moves
// to a new node may be lost or, with Kvrocks, arrive twice: these counts
// are reported, not judged.
type PubSubReport struct {
	// Published counts PUBLISH commands answered with a receiver count;
	// NoReceivers those answered 0 (no subscription was in place).
	Published, NoReceivers int
	// Received counts messages the subscriber got; Missing the messages
	// published to at least one receiver that it never got; Duplicates
	// the repeats; OutOfOrder those older than one received before.
	Received, Missing, Duplicates, OutOfOrder int
}

// publisher publishes consecutive numbers and remembers which ones a
// receiver was there for.
type publisher struct {
	cl       *redis.Client
	tally    *Tally
	received []bool // by number: published to at least one receiver
	noOne    int
}

func (p *publisher) run(stop *atomic.Bool) {
	tick := time.NewTicker(publishInterval)
	defer tick.Stop()
	for seq := 0; !stop.Load(); seq++ {
		start := time.Now()
		n, err := p.cl.Publish(bg, soakChannel, strconv.Itoa(seq)).Result()
		now := time.Now()
		p.tally.Request(OpPublish, 1, now.Sub(start), now)
		switch {
		case err != nil:
			p.tally.Error(OpPublish, err, now)
			p.received = append(p.received, false)
		case n == 0:
			p.noOne++
			p.received = append(p.received, false)
		default:
			p.received = append(p.received, true)
		}
		<-tick.C
	}
}

// subscriber receives the publisher's numbers.
type subscriber struct {
	ps    *redis.PubSub
	tally *Tally
	// counts holds how often each number arrived (saturating).
	counts     []uint8
	last       int
	outOfOrder int
	lastAt     atomic.Int64 // Unix nanoseconds of the last message
}

// subscribe subscribes cl and waits for the confirmation, so the publisher
// starts with a receiver.
func subscribe(cl *redis.Client, tally *Tally, timeout time.Duration) (*subscriber, error) {
	ps := cl.Subscribe(bg, soakChannel)
	if _, err := ps.ReceiveTimeout(bg, timeout); err != nil {
		_ = ps.Close()
		return nil, err
	}
	return &subscriber{ps: ps, tally: tally, last: -1}, nil
}

// receiveTimeout bounds one wait for a message, so the loop sees stop.
const receiveTimeout = 500 * time.Millisecond

func (s *subscriber) run(stop *atomic.Bool) {
	for !stop.Load() {
		msg, err := s.ps.ReceiveTimeout(bg, receiveTimeout)
		if err != nil {
			var netErr net.Error
			if errors.As(err, &netErr) && netErr.Timeout() {
				continue // nothing published meanwhile; go-redis keeps the connection
			}
			s.tally.Error(OpSubscribe, err, time.Now())
			time.Sleep(50 * time.Millisecond) // go-redis re-subscribes at the next receive
			continue
		}
		m, ok := msg.(*redis.Message)
		if !ok {
			continue // a (re-)subscription's confirmation, or a pong
		}
		s.lastAt.Store(time.Now().UnixNano())
		seq, err := strconv.Atoi(m.Payload)
		if err != nil || seq < 0 {
			s.tally.Error(OpSubscribe, badReply("message %q is no number the publisher sent", m.Payload), time.Now())
			continue
		}
		for len(s.counts) <= seq {
			s.counts = append(s.counts, 0)
		}
		if s.counts[seq] < 255 {
			s.counts[seq]++
		}
		if seq < s.last {
			s.outOfOrder++
		}
		s.last = max(s.last, seq)
	}
}

// drainQuiet is how long the subscriber must get nothing, after the
// publisher stopped, before its count is final.
const drainQuiet = 300 * time.Millisecond

// awaitQuiet waits until the subscriber got nothing for drainQuiet, at
// most limit.
func (s *subscriber) awaitQuiet(limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if time.Since(time.Unix(0, s.lastAt.Load())) >= drainQuiet {
			return
		}
		time.Sleep(drainQuiet / 3)
	}
}

// pubSubReport compares what p published with what s received; both have
// stopped.
func pubSubReport(p *publisher, s *subscriber) PubSubReport {
	r := PubSubReport{NoReceivers: p.noOne}
	for seq, withReceiver := range p.received {
		if withReceiver {
			r.Published++
		}
		got := 0
		if seq < len(s.counts) {
			got = int(s.counts[seq])
		}
		r.Received += got
		if got > 1 {
			r.Duplicates += got - 1
		}
		if got == 0 && withReceiver {
			r.Missing++
		}
	}
	r.Published += p.noOne
	r.OutOfOrder = s.outOfOrder
	return r
}
