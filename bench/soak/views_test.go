package soak

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/kvsim"
	"kvproxy/controller"
	"kvproxy/proxy"
	"kvproxy/router"
)

func TestParseSlotMasters(t *testing.T) {
	nodes := "aaa 127.0.0.1:1@10001 myself,master - 0 0 3 connected 0-99 200 [150->-bbb]\n" +
		"bbb 127.0.0.1:2@10002 slave aaa 0 0 3 connected\n" +
		"ccc 127.0.0.1:3@10003 master - 0 0 3 connected 100-199 201-16383\n" +
		"ddd 127.0.0.1:4@10004 master - 0 0 3 connected\n" +
		"short line\n"
	assert.Equal(t, slotMasters{{0, 99, "aaa"}, {100, 199, "ccc"}, {200, 200, "aaa"}, {201, 16383, "ccc"}}, parseSlotMasters(nodes))
	merged := "aaa 127.0.0.1:1@10001 master - 0 0 3 connected 5-9 0-4 10\n"
	assert.Equal(t, slotMasters{{0, 10, "aaa"}}, parseSlotMasters(merged), "adjacent ranges of one master merge")
	assert.Equal(t, "[0-10 aaa]", parseSlotMasters(merged).String())
	assert.Empty(t, parseSlotMasters(""))

	cl := &controller.Cluster{Version: 7, Shards: []controller.Shard{
		{Master: controller.Node{ID: "cccccccccc"}, Slots: []controller.SlotRange{{Start: 100, End: 199}, {Start: 201, End: 16383}}},
		{Master: controller.Node{ID: "aaa"}, Slots: []controller.SlotRange{{Start: 0, End: 99}, {Start: 200, End: 200}}},
	}}
	assert.Equal(t, "[0-99 aaa, 100-199 cccccccc, 200-200 aaa, 201-16383 cccccccc]", controllerMasters(cl).String())
}

// The check agrees on a cluster at rest, then finds a node that took a
// topology the controller never committed.
func TestCheckViewsComparesControllerNodesAndProxy(t *testing.T) {
	simCfg := kvsim.DefaultClusterConfig()
	simCfg.ControllerAPI.Listen = "127.0.0.1:0"
	simCfg.Controller.AutoFailover = false
	sim, err := kvsim.StartCluster(simCfg)
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	api, err := controller.New(sim.ControllerAPIURL(), kvsim.DefaultAPINamespace, kvsim.DefaultAPICluster, "", 10*time.Second)
	require.NoError(t, err)
	t.Cleanup(api.Close)
	proxyCl := NewClient(startProxy(t, sim.Masters()[0].Addr()), 5*time.Second, 1)
	t.Cleanup(func() { _ = proxyCl.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	check := checkViews(ctx, api, sim, proxyCl, 5*time.Second)
	assert.Empty(t, check.Disagreements)
	assert.Equal(t, int64(1), check.Version)
	masters := sim.Masters()
	assert.Equal(t, "[0-5460 "+masters[0].ID()[:8]+", 5461-10922 "+masters[1].ID()[:8]+", 10923-16383 "+masters[2].ID()[:8]+"]",
		check.Masters)

	// Shard 0 swapped, version 2, pushed to shard 2's replica only.
	swapped := sim.Topology()
	swapped.Version++
	s0 := &swapped.Shards[0]
	s0.Master, s0.Replicas[0] = s0.Replicas[0], s0.Master
	stray := sim.ReplicasOf(masters[2].ID())[0]
	strayCl := redis.NewClient(&redis.Options{Addr: stray.Addr(), Protocol: 2, DisableIdentity: true, MaxRetries: -1})
	t.Cleanup(func() { _ = strayCl.Close() })
	require.NoError(t, strayCl.Do(ctx, "CLUSTERX", "SETNODES", swapped.Render(), strconv.FormatInt(swapped.Version, 10)).Err())

	nodes := map[string]*redis.Client{stray.Addr(): strayCl}
	check = compareViews(ctx, api, nodes, proxyCl)
	assert.Equal(t, int64(1), check.Version)
	require.Len(t, check.Disagreements, 2, "%q", check.Disagreements)
	assert.Equal(t, "node "+stray.Addr()+": version 2, the controller's 1", check.Disagreements[0])
	assert.Contains(t, check.Disagreements[1], "node "+stray.Addr()+": CLUSTER NODES: [0-5460 "+s0.Master.ID[:8]+", ")
}

// startProxy serves kvproxy in this process in front of the cluster seeded
// by seed and returns its address.
func startProxy(t *testing.T, seed string) string {
	t.Helper()
	rcfg := router.DefaultConfig()
	rcfg.Seeds = []string{seed}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt, err := router.New(ctx, rcfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = rt.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	pcfg := proxy.DefaultConfig()
	pcfg.ListenAddr, pcfg.AnnounceAddr = ln.Addr().String(), ln.Addr().String()
	srv, err := proxy.New(pcfg, rt)
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		assert.NoError(t, srv.Close())
		assert.ErrorIs(t, <-served, proxy.ErrServerClosed)
	})
	return ln.Addr().String()
}
