package proxy

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/failover"
	"kvproxy/router"
)

// recordingHold is a router's hold, a real failover.Buffer, that keeps the
// tickets it hands out, in the order it does: its masters' queue order.
type recordingHold struct {
	*failover.Buffer
	mu      sync.Mutex
	tickets []*failover.Ticket
}

func (h *recordingHold) Admit(master string, write bool, deadline time.Time) *failover.Ticket {
	ticket := h.Buffer.Admit(master, write, deadline)
	if ticket != nil {
		h.mu.Lock()
		h.tickets = append(h.tickets, ticket)
		h.mu.Unlock()
	}
	return ticket
}

func (h *recordingHold) handedOut() []*failover.Ticket {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*failover.Ticket(nil), h.tickets...)
}

// ticketState is where a ticket stood at some moment.
type ticketState string

func stateOf(ticket *failover.Ticket) ticketState {
	switch {
	case ticket.Released():
		return "released"
	case ticket.Expired():
		return "expired"
	}
	return "waiting"
}

// watchedRouter is a router whose dedicated connections record, at each
// write, where every ticket of the hold stands.
type watchedRouter struct {
	*router.Router
	hold *recordingHold
	mu   sync.Mutex
	// dedicated are the tickets AdmitWrite handed out.
	dedicated []*failover.Ticket
	// writes are the dedicated connections' writes, each with the state of
	// every ticket handed out by then.
	writes []dedicatedWrite
}

type dedicatedWrite struct {
	data    string
	tickets []ticketState
}

func (r *watchedRouter) AdmitWrite(addr string, arrived time.Time) *failover.Ticket {
	ticket := r.Router.AdmitWrite(addr, arrived)
	if ticket != nil {
		r.mu.Lock()
		r.dedicated = append(r.dedicated, ticket)
		r.mu.Unlock()
	}
	return ticket
}

func (r *watchedRouter) DialNode(ctx context.Context, addr string) (net.Conn, error) {
	conn, err := r.Router.DialNode(ctx, addr)
	if err != nil {
		return nil, err
	}
	return &watchedConn{Conn: conn, r: r}, nil
}

type watchedConn struct {
	net.Conn
	r *watchedRouter
}

func (c *watchedConn) Write(p []byte) (int, error) {
	w := dedicatedWrite{data: string(p)}
	for _, ticket := range c.r.hold.handedOut() {
		w.tickets = append(w.tickets, stateOf(ticket))
	}
	c.r.mu.Lock()
	c.r.writes = append(c.r.writes, w)
	c.r.mu.Unlock()
	return c.Conn.Write(p)
}

// A transaction's EXEC held while its master fails over waits in the same
// queue as the other clients' held writes, which the router holds: it is
// released after the write held before it, and the write held after it is
// released only once the transaction is written. The hold counts its wait
// with theirs. (The drain's grace is a minute here, so each release waits
// for the previous ticket's Sent.)
func TestDedicatedTransactionHeldInTurnWithRoutedWrites(t *testing.T) {
	sim := startKvsim(t)
	hcfg := failover.DefaultConfig()
	hcfg.DrainGrace = time.Minute
	buffer, err := failover.New(hcfg)
	require.NoError(t, err)
	t.Cleanup(buffer.Close)
	hold := &recordingHold{Buffer: buffer}
	rcfg := router.DefaultConfig()
	for _, m := range sim.Masters() {
		rcfg.Seeds = append(rcfg.Seeds, m.Addr())
	}
	rcfg.Hold = hold
	rcfg.HoldTimeout = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt, err := router.New(ctx, rcfg)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, rt.Close()) })
	wr := &watchedRouter{Router: rt, hold: hold}
	_, addr := startProxy(t, wr, nil)

	const key = "{fifo}log"
	master := rt.MasterOf(int(router.Slot([]byte(key))))
	require.NotEmpty(t, master)
	first, transaction, last := dialResp(t, addr), dialResp(t, addr), dialResp(t, addr)
	heldNow := func() uint64 { return buffer.Report().Of(master).Holds.HeldNow }

	buffer.Observe(master, failover.EventWritesPaused)
	first.send(encodeCommand("RPUSH", key, "first"))
	require.Eventually(t, func() bool { return heldNow() == 1 }, 5*time.Second, time.Millisecond)
	sendTransaction(transaction, []string{"RPUSH", key, "transaction"})
	require.Eventually(t, func() bool { return heldNow() == 2 }, 5*time.Second, time.Millisecond)
	last.send(encodeCommand("RPUSH", key, "last"))
	require.Eventually(t, func() bool { return heldNow() == 3 }, 5*time.Second, time.Millisecond)
	tickets := hold.handedOut()
	require.Len(t, tickets, 3)
	wr.mu.Lock()
	require.Equal(t, []*failover.Ticket{tickets[1]}, wr.dedicated, "the transaction holds the second ticket, in its arrival order")
	require.Empty(t, wr.writes, "nothing of the transaction is sent while it is held")
	wr.mu.Unlock()

	buffer.Observe(master, failover.EventWritesResumed)
	assert.Regexp(t, `^:[123]\r\n$`, first.read())
	assert.Regexp(t, `^\*1\r\n:[123]\r\n$`, readTransaction(t, transaction, 1))
	assert.Regexp(t, `^:[123]\r\n$`, last.read())
	assert.ElementsMatch(t, []string{"first", "transaction", "last"}, lrange(t, first, key), "each ran once")

	wr.mu.Lock()
	writes := wr.writes
	wr.mu.Unlock()
	require.NotEmpty(t, writes)
	sawExec := false
	for _, w := range writes {
		assert.Equal(t, []ticketState{"released", "released", "waiting"}, w.tickets,
			"while the transaction is written, the write held before it was released and the one after it still waits: %q", w.data)
		sawExec = sawExec || bytes.Contains([]byte(w.data), rawEXEC)
	}
	assert.True(t, sawExec, "EXEC went on the dedicated connection")
	counts := buffer.Report().Of(master).Holds
	counts.Longest = 0
	assert.Equal(t, failover.Counts{Held: 3, Released: 3}, counts, "the transaction's wait is counted with the routed writes'")
}

// lrange returns the elements of the list at key.
func lrange(t *testing.T, c *respConn, key string) []string {
	t.Helper()
	reply := c.do("LRANGE", key, "0", "-1")
	var elements []string
	for line := range strings.SplitSeq(reply, "\r\n") {
		if line != "" && line[0] != '*' && line[0] != '$' {
			elements = append(elements, line)
		}
	}
	return elements
}
