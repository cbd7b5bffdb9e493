package kvsim

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// apiTestController is a controller of nodes that never start, holding
// topology version 3 after a failover of shard 0 (its first node, now a
// replica, stays listed first) and a shard 1 without replicas whose ranges
// were pushed unmerged.
func apiTestController(t *testing.T) *Controller {
	t.Helper()
	var nodes []*Node
	for i, id := range []string{ntID('a'), ntID('b'), ntID('c')} {
		n, err := NewNode(NodeConfig{Addr: "10.0.0.1:700" + string(rune('1'+i)), ID: id})
		require.NoError(t, err)
		nodes = append(nodes, n)
	}
	ctrl, err := newController(DefaultControllerConfig(), "secret", slog.New(slog.DiscardHandler), nodes)
	require.NoError(t, err)
	t.Cleanup(ctrl.close)
	ctrl.createdAt = 1700000000
	ref := func(i int) NodeRef { return NodeRef{ID: nodes[i].ID(), Addr: nodes[i].Addr()} }
	ctrl.setTopology(Topology{Version: 3, Shards: []ShardTopology{
		{Master: ref(1), Replicas: []NodeRef{ref(0)}, Slots: []SlotRange{{0, 8191}}},
		{Master: ref(2), Slots: []SlotRange{{8192, 10000}, {10001, 10001}, {10002, 16383}}},
	}})
	return ctrl
}

func readGolden(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "controller_api", name))
	require.NoError(t, err)
	return strings.TrimSuffix(string(b), "\n")
}

// The answers are byte for byte what kvrocks-controller's structs marshal
// to (testdata/controller_api, written from its store and server/helper
// packages), with its status codes.
func TestControllerAPIAnswersAsKvrocksController(t *testing.T) {
	srv := httptest.NewServer(apiTestController(t).APIHandler("ns1", "c1"))
	t.Cleanup(srv.Close)
	const cl = "/api/v1/namespaces/ns1/clusters/c1"
	for _, tc := range []struct {
		method, path, body string
		status             int
		golden             string
	}{
		{"GET", "/api/v1/namespaces", "", 200, "namespaces.json"},
		{"GET", "/api/v1/namespaces/ns1", "", 200, "namespace_exists.json"},
		{"GET", "/api/v1/namespaces/other", "", 404, "not_found.json"},
		{"GET", "/api/v1/namespaces/ns1/clusters", "", 200, "clusters.json"},
		{"GET", "/api/v1/namespaces/other/clusters", "", 400, "namespace_not_found.json"},
		{"GET", cl, "", 200, "cluster.json"},
		{"GET", "/api/v1/namespaces/ns1/clusters/other", "", 404, "cluster_not_found.json"},
		{"GET", "/api/v1/namespaces/other/clusters/c1", "", 404, "cluster_not_found.json"},
		{"GET", cl + "/shards", "", 200, "shards.json"},
		{"GET", cl + "/shards/1", "", 200, "shard.json"},
		{"GET", cl + "/shards/2", "", 400, "index_out_of_range.json"},
		{"GET", cl + "/shards/-1", "", 400, "index_out_of_range.json"},
		{"GET", cl + "/shards/x", "", 400, "shard_not_a_number.json"},
		{"POST", cl + "/shards/x/failover", "{}", 400, "shard_not_a_number.json"},
		{"POST", cl + "/shards/5/failover", "{}", 400, "index_out_of_range.json"},
		{"POST", "/api/v1/namespaces/ns1/clusters/other/shards/0/failover", "{}", 404, "cluster_not_found.json"},
		{"POST", cl + "/shards/0/failover", "", 400, "failover_empty_body.json"},
		{"POST", cl + "/shards/0/failover", `{"preferred_node_id": "1234567890"}`, 400, "failover_invalid_node_id.json"},
		{"POST", cl + "/shards/1/failover", "{}", 500, "failover_no_replica.json"},
		{"POST", cl + "/shards/0/failover", `{"options":{"pause_timeout_ms":100,"sync_timeout_ms":200}}`, 500, "failover_pause_not_longer.json"},
		{"GET", cl + "/shards/0/failover", "", 404, "not_found.json"},
		{"POST", cl, "{}", 404, "not_found.json"},
		{"GET", "/api/v2/namespaces", "", 404, "not_found.json"},
	} {
		req, err := http.NewRequestWithContext(t.Context(), tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
		require.NoError(t, err)
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, tc.status, resp.StatusCode, "%s %s", tc.method, tc.path)
		assert.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"), "%s %s", tc.method, tc.path)
		assert.Equal(t, readGolden(t, tc.golden), string(body), "%s %s", tc.method, tc.path)
	}
}

func TestControllerAPIConfigRejectsBadAddressesAndNames(t *testing.T) {
	assert.NoError(t, ControllerAPIConfig{}.Validate())
	assert.NoError(t, ControllerAPIConfig{Namespace: "test-ns", Cluster: "c_1"}.Validate())
	assert.NoError(t, ControllerAPIConfig{Listen: "127.0.0.1:0"}.Validate())
	for _, bad := range []ControllerAPIConfig{{Namespace: "a/b"}, {Cluster: "a b"}, {Cluster: "x?y"}, {Namespace: "%2F"}, {Listen: "9379"}} {
		assert.Error(t, bad.Validate(), "%+v", bad)
	}
	cfg := DefaultClusterConfig()
	cfg.ControllerAPI.Cluster = "a/b"
	assert.ErrorContains(t, cfg.Validate(), "kvsim: controller API name")
}

// apiCall sends one request to a controller API and decodes its answer.
func apiCall(t *testing.T, method, url, body string) (int, apiTestResponse) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out apiTestResponse
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, json.NewDecoder(bytes.NewReader(raw)).Decode(&out), "%s", raw)
	return resp.StatusCode, out
}

// apiTestResponse decodes the answers the live tests read.
type apiTestResponse struct {
	Error *apiError `json:"error"`
	Data  struct {
		Cluster     *apiCluster `json:"cluster"`
		NewMasterID string      `json:"new_master_id"`
	} `json:"data"`
}

// roles maps each node id of a shard's API listing to its role.
func roles(s apiShard) map[string]string {
	out := map[string]string{}
	for _, n := range s.Nodes {
		out[n.ID] = n.Role
	}
	return out
}

// The API's failover is the controller's CLIENT PAUSE one, on a released
// Kvrocks too (no CLUSTERX FAILOVER there), and GET cluster follows it:
// roles swapped in place, version bumped.
func TestControllerAPIFailoverOnReleasedKvrocks(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	cfg := testClusterConfig(t)
	cfg.Released = true
	cfg.Controller.AutoFailover = false
	cfg.ControllerAPI = ControllerAPIConfig{Listen: "127.0.0.1:0"}
	c := startTestCluster(t, cfg)
	ctx := testContext(t)
	base := c.ControllerAPIURL()
	require.True(t, strings.HasPrefix(base, "http://127.0.0.1:"), base)
	cl := base + "/api/v1/namespaces/" + DefaultAPINamespace + "/clusters/" + DefaultAPICluster
	first, second := c.Nodes()[0], c.Nodes()[1]
	require.NoError(t, dial(t, first, "").Set(ctx, "bar", "v1", 0).Err())
	assert.Equal(t, "ERR CLUSTERX command, CLUSTERX VERSION|MYID|SETNODEID|SETNODES|SETSLOT|MIGRATE",
		ntErr(dial(t, first, "").Do(ctx, "CLUSTERX", "FAILOVER", second.ID()).Err()))

	code, got := apiCall(t, "GET", cl, "")
	require.Equal(t, 200, code)
	require.NotNil(t, got.Data.Cluster)
	assert.Equal(t, int64(1), got.Data.Cluster.Version)
	assert.Equal(t, DefaultAPICluster, got.Data.Cluster.Name)
	require.Len(t, got.Data.Cluster.Shards, 2)
	assert.Equal(t, []string{"0-8191"}, got.Data.Cluster.Shards[0].SlotRanges)
	assert.Equal(t, map[string]string{first.ID(): "master", second.ID(): "slave"}, roles(got.Data.Cluster.Shards[0]))

	code, got = apiCall(t, "POST", cl+"/shards/0/failover", `{"preferred_node_id":"`+second.ID()+`"}`)
	require.Equal(t, 200, code, "%+v", got.Error)
	assert.Equal(t, second.ID(), got.Data.NewMasterID)
	_, got = apiCall(t, "GET", cl, "")
	assert.Equal(t, int64(2), got.Data.Cluster.Version)
	s0 := got.Data.Cluster.Shards[0]
	assert.Equal(t, []string{first.ID(), second.ID()}, []string{s0.Nodes[0].ID, s0.Nodes[1].ID}, "nodes stay in place")
	assert.Equal(t, map[string]string{first.ID(): "slave", second.ID(): "master"}, roles(s0))
	v, err := dial(t, second, "").Get(ctx, "bar").Result()
	require.NoError(t, err)
	assert.Equal(t, "v1", v)

	// A preferred node that is no replica of the shard is ignored, as
	// upstream ignores it: its best replica is promoted.
	require.Eventually(t, func() bool {
		return polledInfoField(ctx, dial(t, first, ""), "replication", "master_link_status") == "up"
	}, 10*time.Second, 20*time.Millisecond, "the old master follows the new one")
	code, got = apiCall(t, "POST", cl+"/shards/0/failover", `{"preferred_node_id":"`+ntID('f')+`","options":{"sync_timeout_ms":5000,"pause_timeout_ms":10000}}`)
	require.Equal(t, 200, code, "%+v", got.Error)
	assert.Equal(t, first.ID(), got.Data.NewMasterID)
	_, got = apiCall(t, "GET", cl, "")
	assert.Equal(t, int64(3), got.Data.Cluster.Version)

	// No reachable replica: upstream's "no match new master in shard".
	require.NoError(t, c.Controller().Kill(c.Nodes()[3].ID()))
	code, got = apiCall(t, "POST", cl+"/shards/1/failover", `{}`)
	assert.Equal(t, 500, code)
	require.NotNil(t, got.Error)
	assert.Equal(t, "no match new master in shard", got.Error.Message)
	assert.Equal(t, int64(3), c.Topology().Version)
}
