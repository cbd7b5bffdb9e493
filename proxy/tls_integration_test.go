package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/cluster"
	"kvproxy/failover"
	"kvproxy/internal/tlstest"
	"kvproxy/router"
)

// startTLSProxy serves backend on a plain and a TLS listener at once (the
// TLS one asking for client certificates when clientCA) and returns both
// addresses.
func startTLSProxy(t *testing.T, backend Backend, pki *tlstest.PKI, clientCA bool) (srv *Server, plainAddr, tlsAddr string) {
	t.Helper()
	return startTLSProxyWith(t, backend, pki, clientCA, nil)
}

// startTLSProxyWith is startTLSProxy with edit, when not nil, changing the
// proxy's Config.
func startTLSProxyWith(t *testing.T, backend Backend, pki *tlstest.PKI, clientCA bool, edit func(*Config)) (srv *Server, plainAddr, tlsAddr string) {
	t.Helper()
	ln, plain, secure := newTLSListener(t, pki, clientCA)
	srv, _ = startProxyOn(t, ln, backend, func(c *Config) {
		c.TLSAnnounceAddr = secure.Addr().String()
		if edit != nil {
			edit(c)
		}
	})
	return srv, plain.Addr().String(), secure.Addr().String()
}

// newTLSListener is a Listener on a plain and a TLS loopback listener, the
// TLS one asking for client certificates when clientCA.
func newTLSListener(t *testing.T, pki *tlstest.PKI, clientCA bool) (ln *Listener, plain, secure net.Listener) {
	t.Helper()
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	secure, err = net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln, err = NewListener(plain, secure, pki.ServerConfig(clientCA), nil)
	require.NoError(t, err)
	return ln, plain, secure
}

// startOneMasterProxy is a one-master Redis Cluster, plain or TLS, behind a
// router whose Config edit changes.
func startOneMasterProxy(t *testing.T, clusterTLS *cluster.TLS, edit func(*router.Config)) *router.Router {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	opts := oneMaster
	opts.TLS = clusterTLS
	c := startCluster(t, opts)
	cfg := router.DefaultConfig()
	cfg.Seeds = c.Addrs()
	if edit != nil {
		edit(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := router.New(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, r.Close()) })
	return r
}

// clientsByTransport counts the proxy's clients on an event loop and in
// goroutine mode, TLS and plain apart.
func clientsByTransport(srv *Server) (plainInLoop, plainOther, tlsInLoop, tlsOther int) {
	for c, inLoop := range clientModes(srv) {
		_, secure := c.nc.(*tls.Conn)
		switch {
		case secure && inLoop:
			tlsInLoop++
		case secure:
			tlsOther++
		case inLoop:
			plainInLoop++
		default:
			plainOther++
		}
	}
	return
}

// TLS clients through the proxy, beside plain ones, in front of a real
// Redis Cluster: go-redis and redis-cli --tls round trips, pipelines,
// MULTI/EXEC, Pub/Sub and blocking commands; TLS clients are served in
// goroutine mode while plain ones stay on the event loops.
func TestTLSClientsBesidePlainOnes(t *testing.T) {
	pki := tlstest.New(t, "kvproxy test")
	r := startOneMasterProxy(t, nil, nil)
	srv, plainAddr, tlsAddr := startTLSProxy(t, r, pki, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	secure := redis.NewClient(&redis.Options{Addr: tlsAddr, TLSConfig: pki.ClientConfig(false), PoolSize: 2})
	defer secure.Close()
	plain := redis.NewClient(&redis.Options{Addr: plainAddr, PoolSize: 2})
	defer plain.Close()

	t.Run("round trip", func(t *testing.T) {
		require.NoError(t, secure.Set(ctx, "tls:k", "v", 0).Err())
		assert.Equal(t, "v", plain.Get(ctx, "tls:k").Val(), "written over TLS, read over plain TCP")
	})

	t.Run("plain stays on the event loops", func(t *testing.T) {
		if !eventLoopsSupported {
			t.Skip("no event loops on this platform")
		}
		require.NoError(t, plain.Ping(ctx).Err())
		require.NoError(t, secure.Ping(ctx).Err())
		plainInLoop, _, tlsInLoop, tlsOther := clientsByTransport(srv)
		assert.Positive(t, plainInLoop, "plain clients are served on event loops")
		assert.Zero(t, tlsInLoop, "a TLS client has no socket for the loop to read")
		assert.Positive(t, tlsOther)
	})

	t.Run("cluster slots name the client's listener", func(t *testing.T) {
		for client, addr := range map[*redis.Client]string{secure: tlsAddr, plain: plainAddr} {
			slots, err := client.ClusterSlots(ctx).Result()
			require.NoError(t, err)
			require.Len(t, slots, 1)
			assert.Equal(t, addr, slots[0].Nodes[0].Addr)
			nodes, err := client.ClusterNodes(ctx).Result()
			require.NoError(t, err)
			assert.Contains(t, nodes, " "+addr+"@")
		}
	})

	t.Run("pipeline", func(t *testing.T) {
		cmds, err := secure.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range 200 {
				p.Set(ctx, "tls:p:"+strconv.Itoa(i), i, 0)
				p.Get(ctx, "tls:p:"+strconv.Itoa(i))
			}
			return nil
		})
		require.NoError(t, err)
		for i := range 200 {
			assert.Equal(t, strconv.Itoa(i), cmds[2*i+1].(*redis.StringCmd).Val())
		}
	})

	t.Run("multi exec, pubsub, blocking", func(t *testing.T) {
		checkDedicated(ctx, t, srv, secure, plain)
	})

	t.Run("redis-cli", func(t *testing.T) {
		host, port, _ := net.SplitHostPort(tlsAddr)
		out, err := exec.CommandContext(ctx, "redis-cli", "-h", host, "-p", port, "--tls", "--cacert", pki.CAFile,
			"SET", "tls:cli", "from-redis-cli").CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Equal(t, "OK", strings.TrimSpace(string(out)))
		out, err = exec.CommandContext(ctx, "redis-cli", "-h", host, "-p", port, "--tls", "--cacert", pki.CAFile,
			"GET", "tls:cli").CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Equal(t, "from-redis-cli", strings.TrimSpace(string(out)))
	})
}

// A TLS client that hangs up while its BLPOP waits has its blocking command
// ended at once, whether it says goodbye (close_notify, then FIN) or just
// drops the connection (FIN).
func TestTLSClientHangUpEndsItsBlockingCommand(t *testing.T) {
	pki := tlstest.New(t, "kvproxy test")
	r := startOneMasterProxy(t, nil, nil)
	srv, _, tlsAddr := startTLSProxy(t, r, pki, false)
	for _, tc := range []struct {
		name   string
		hangUp func(*tls.Conn) error
	}{
		{"close_notify", func(c *tls.Conn) error { return c.Close() }},
		{"socket closed", func(c *tls.Conn) error { return c.NetConn().Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", tlsAddr, pki.ClientConfig(false))
			require.NoError(t, err)
			_, err = conn.Write([]byte(encodeCommand("BLPOP", "tls:never", "0")))
			require.NoError(t, err)
			require.Eventually(t, func() bool { return len(srv.blockingSlots) == 1 }, 10*time.Second, 5*time.Millisecond)
			require.NoError(t, tc.hangUp(conn))
			require.Eventually(t, func() bool { return len(srv.blockingSlots) == 0 }, 10*time.Second, 5*time.Millisecond,
				"BLPOP 0 only ends when the proxy sees the client gone")
		})
	}
}

// With a client CA, a client without a certificate is refused and one with
// a certificate the CA signed is served.
func TestTLSClientCertificateRequired(t *testing.T) {
	pki := tlstest.New(t, "kvproxy test")
	_, _, tlsAddr := startTLSProxy(t, newFakeCluster(1), pki, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	anonymous := redis.NewClient(&redis.Options{Addr: tlsAddr, TLSConfig: pki.ClientConfig(false), MaxRetries: -1})
	defer anonymous.Close()
	err := anonymous.Ping(ctx).Err()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "certificate required")

	stranger := tlstest.New(t, "another CA")
	foreign := stranger.ClientConfig(true)
	foreign.RootCAs = pki.ClientConfig(false).RootCAs
	other := redis.NewClient(&redis.Options{Addr: tlsAddr, TLSConfig: foreign, MaxRetries: -1})
	defer other.Close()
	require.Error(t, other.Ping(ctx).Err(), "a certificate of another CA is refused")

	known := redis.NewClient(&redis.Options{Addr: tlsAddr, TLSConfig: pki.ClientConfig(true)})
	defer known.Close()
	assert.Equal(t, "PONG", known.Ping(ctx).Val())
}

// Backend TLS: a Redis Cluster serving TLS only (its bus and replication
// too, client certificates required), reached by the router over mutual
// TLS for data, dedicated connections (MULTI, BLPOP, Pub/Sub) and the
// topology reloads, behind a TLS client listener.
func TestTLSBackendRedisCluster(t *testing.T) {
	pki := tlstest.New(t, "kvproxy test")
	clusterTLS := &cluster.TLS{CertFile: pki.ServerCert, KeyFile: pki.ServerKey, CAFile: pki.CAFile, Client: pki.ClientConfig(true)}
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	c := cluster.Start(t, cluster.Options{Masters: 2, TLS: clusterTLS})
	cfg := router.DefaultConfig()
	cfg.Seeds = c.Addrs()
	cfg.TLS = pki.ClientConfig(true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := router.New(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, r.Close()) })
	srv, _, tlsAddr := startTLSProxy(t, r, pki, false)

	client := redis.NewClient(&redis.Options{Addr: tlsAddr, TLSConfig: pki.ClientConfig(false), PoolSize: 2})
	defer client.Close()
	for i := range 50 {
		require.NoError(t, client.Set(ctx, "k"+strconv.Itoa(i), i, 0).Err())
	}
	for i := range 50 {
		assert.Equal(t, strconv.Itoa(i), client.Get(ctx, "k"+strconv.Itoa(i)).Val())
	}
	n, err := client.Exists(ctx, "k1", "k2", "k3", "k4").Result()
	require.NoError(t, err)
	assert.Equal(t, int64(4), n, "a multi-key command split across both masters")

	checkDedicated(ctx, t, srv, client, client)
}

// checkDedicated runs, through client, what the proxy serves on dedicated
// backend connections: MULTI/EXEC, a subscription receiving what other
// publishes, a BLPOP answered by other's push.
func checkDedicated(ctx context.Context, t *testing.T, srv *Server, client, other *redis.Client) {
	t.Helper()
	cmds, err := client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, "{tls}n")
		p.Incr(ctx, "{tls}n")
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, int64(2), cmds[1].(*redis.IntCmd).Val())

	sub := client.Subscribe(ctx, "tls:news")
	defer sub.Close()
	_, err = sub.Receive(ctx)
	require.NoError(t, err)
	require.NoError(t, other.Publish(ctx, "tls:news", "over tls").Err())
	msg, err := sub.ReceiveMessage(ctx)
	require.NoError(t, err)
	assert.Equal(t, "over tls", msg.Payload)

	got := make(chan []string, 1)
	go func() { got <- client.BLPop(ctx, 10*time.Second, "tls:list").Val() }()
	require.Eventually(t, func() bool { return len(srv.blockingSlots) == 1 }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, other.RPush(ctx, "tls:list", "x").Err())
	assert.Equal(t, []string{"tls:list", "x"}, <-got)
}

// CLUSTERX FAILOVER through the proxy on a TLS-only Redis Cluster: the hold
// follows the handover on TLS connections of its own (router.Dialer with
// TLS), the proxy routes the shard to the new master, and TLS clients keep
// writing.
func TestTLSBackendFailoverThroughTheProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	pki := tlstest.New(t, "kvproxy test")
	c := cluster.Start(t, cluster.Options{Masters: 1, ReplicasPerMaster: 1, TLS: &cluster.TLS{
		CertFile: pki.ServerCert, KeyFile: pki.ServerKey, CAFile: pki.CAFile, Client: pki.ClientConfig(true)}})
	master := c.Masters()[0]
	replica := c.ReplicasOf(master.ID)[0]
	rcfg := router.DefaultConfig()
	rcfg.Seeds = c.Addrs()
	rcfg.TLS = pki.ClientConfig(true)
	holds := startHold(t, &rcfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := router.New(ctx, rcfg)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, r.Close()) })
	_, _, tlsAddr := startTLSProxyWith(t, r, pki, false, func(c *Config) { c.Handovers = holds })

	client := redis.NewClient(&redis.Options{Addr: tlsAddr, TLSConfig: pki.ClientConfig(false)})
	defer client.Close()
	require.NoError(t, client.Set(ctx, "before", "1", 0).Err())
	require.Equal(t, "OK", client.Do(ctx, "CLUSTERX", "FAILOVER", replica.ID).Val())
	require.Eventually(t, func() bool {
		reports := holds.Report().Masters
		return len(reports) == 1 && reports[0].Last.Final == failover.PhaseSuccess
	}, 30*time.Second, 10*time.Millisecond, "the handover was followed to success over TLS: %+v", holds.Report())
	assert.Equal(t, replica.Addr, r.MasterOf(0), "the shard's writes go to the new master")
	require.NoError(t, client.Set(ctx, "after", "2", 0).Err())
	assert.Equal(t, "1", client.Get(ctx, "before").Val())
	assert.Equal(t, "2", client.Get(ctx, "after").Val())
}

// dialTLSSubscriber subscribes to channel over TLS with a 64 KiB receive
// buffer, so that the proxy's writes to it block soon when it reads nothing.
func dialTLSSubscriber(t *testing.T, addr string, pki *tlstest.PKI, channel string) *tls.Conn {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	require.NoError(t, raw.(*net.TCPConn).SetReadBuffer(64<<10))
	cfg := pki.ClientConfig(false)
	cfg.ServerName = "127.0.0.1"
	conn := tls.Client(raw, cfg)
	t.Cleanup(func() { _ = conn.Close() })
	_, err = conn.Write([]byte(encodeCommand("SUBSCRIBE", channel)))
	require.NoError(t, err)
	want := subscribeFrame("subscribe", channel, 1)
	got := make([]byte, len(want))
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = io.ReadFull(conn, got)
	require.NoError(t, err)
	require.Equal(t, want, string(got))
	return conn
}

// A TLS subscriber's output is bounded as a plain one's. crypto/tls leaves a
// connection broken after a write timed out, so below the limit the proxy
// writes to a TLS subscriber without a deadline: one that reads nothing
// for longer than the stall timeout while under the limit still gets every
// message once it reads. At the limit, one that reads nothing is
// disconnected after the stall timeout.
func TestTLSSubscriberOutputLimit(t *testing.T) {
	pki := tlstest.New(t, "kvproxy test")
	r := startOneMasterProxy(t, nil, nil)
	const n, size = 160, 64 << 10 // 10 MiB: more than the sockets buffer

	t.Run("below the limit a pause longer than the stall timeout costs nothing", func(t *testing.T) {
		const stall = 300 * time.Millisecond
		srv, plainAddr, tlsAddr := startTLSProxyWith(t, r, pki, false, func(c *Config) {
			c.PubSubOutputLimit = 64 << 20
			c.PubSubStallTimeout = stall
		})
		sub := dialTLSSubscriber(t, tlsAddr, pki, "tls:paused")
		pub := dialResp(t, plainAddr)
		replies := publishThrough(t, pub, "tls:paused", n, size)
		require.Equal(t, n, replies[":1\r\n"], "%v", replies)
		// The proxy's writes to the subscriber block now; wait past the
		// stall timeout before reading.
		time.Sleep(3 * stall)
		want, _ := messages("tls:paused", n, size)
		require.NoError(t, readSlowly(sub, want, 64<<10, 0), "every message arrives after the pause")
		assert.Zero(t, infoInt(t, pub, "pubsub_output_limit_disconnections"))
		assert.Zero(t, srv.stats.pubsubOutputLimitPauses.Load(), "the output stayed under the limit")
	})

	t.Run("at the limit one that reads nothing is disconnected", func(t *testing.T) {
		_, plainAddr, tlsAddr := startTLSProxyWith(t, r, pki, false, func(c *Config) {
			c.PubSubOutputLimit = 1 << 20
			c.PubSubStallTimeout = time.Second
		})
		stuck := dialTLSSubscriber(t, tlsAddr, pki, "tls:stuck")
		pub := dialResp(t, plainAddr)
		publishThrough(t, pub, "tls:stuck", n, size)
		require.Eventually(t, func() bool { return infoField(t, pub, "pubsub_output_limit_disconnections") == "1" },
			30*time.Second, 10*time.Millisecond)
		require.NoError(t, stuck.SetReadDeadline(time.Now().Add(10*time.Second)))
		var err error
		for err == nil {
			_, err = stuck.Read(make([]byte, 64<<10))
		}
		assert.False(t, isTimeout(err), "the stuck subscriber's connection is closed: %v", err)
	})
}
