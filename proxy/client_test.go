package proxy

import (
	"bufio"
	"math/rand/v2"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/internal/resp"
)

// withoutEventLoops serves every client on a goroutine of its own.
func withoutEventLoops(c *Config) { c.EventLoops = -1 }

// A conversation that moves a client between its event loop and a goroutine
// (MULTI ... EXEC, RESET) gets the same replies as with goroutines only.
func TestClientModesAnswerAlike(t *testing.T) {
	node := startTransactionNode(t)
	conversation := []string{
		encodeCommand("SET", "a", "1") + encodeCommand("PING"),
		encodeCommand("MULTI") + encodeCommand("INCR", "k"),
		encodeCommand("EXEC") + encodeCommand("GET", "a"),
		encodeCommand("MGET", "a", "b", "c") + encodeCommand("NOPE"),
		encodeCommand("MULTI"),
		encodeCommand("RESET") + encodeCommand("ECHO", "back"),
		encodeCommand("DEL", "a", "b") + encodeCommand("GET", "a"),
	}
	const replies = 13
	answer := func(edit func(*Config)) []string {
		_, addr := startProxy(t, &dedicatedFake{fakeCluster: newFakeCluster(3), node: node.addr}, edit)
		c := dialResp(t, addr)
		for _, part := range conversation {
			c.send(part)
		}
		var got []string
		for range replies {
			got = append(got, c.read())
		}
		return got
	}
	onLoops := answer(nil)
	onGoroutines := answer(withoutEventLoops)
	assert.Equal(t, onGoroutines, onLoops)
	assert.Equal(t, "*1\r\n:1\r\n", onLoops[4])
	assert.Equal(t, "$4\r\nback\r\n", onLoops[10])
}

// Many clients sending their pipelines in random fragments, some hanging up
// and reconnecting (so descriptor numbers are reused), each get exactly
// their own replies in order.
func TestEventLoopClientsGetTheirOwnRepliesInOrder(t *testing.T) {
	baseline := runtime.NumGoroutine()
	backend := newFakeCluster(3)
	srv, addr := startProxy(t, backend, nil)
	const clients, rounds = 12, 15
	var wg sync.WaitGroup
	for id := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(id), 7))
			for round := range rounds {
				conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if !assert.NoError(t, err) {
					return
				}
				c := &respConn{t: t, conn: conn, rd: bufio.NewReader(conn), scanner: resp.NewScanner(1 << 30)}
				depth := 1 + rng.IntN(40)
				var want []string
				var stream strings.Builder
				for i := range depth {
					v := strconv.Itoa(id) + "-" + strconv.Itoa(round) + "-" + strconv.Itoa(i)
					stream.WriteString(encodeCommand("ECHO", v))
					want = append(want, "$"+strconv.Itoa(len(v))+"\r\n"+v+"\r\n")
				}
				raw := stream.String()
				for len(raw) > 0 {
					n := min(len(raw), 1+rng.IntN(64))
					_, err := conn.Write([]byte(raw[:n]))
					if !assert.NoError(t, err) {
						_ = conn.Close()
						return
					}
					raw = raw[n:]
				}
				if round%4 == 3 {
					_ = conn.Close() // hang up with replies pending
					continue
				}
				for i, w := range want {
					got, err := c.tryRead()
					if !assert.NoError(t, err) || !assert.Equal(t, w, got, "client %d round %d reply %d", id, round, i) {
						break
					}
				}
				_ = conn.Close()
			}
		})
	}
	wg.Wait()
	require.NoError(t, srv.Close())
	assertNoGoroutinesLeft(t, baseline)
}
