package controller

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/kvsim"
)

// startKvsim starts a 2 x 1 kvsim cluster serving the controller API on a
// free port.
func startKvsim(t *testing.T) *kvsim.Cluster {
	t.Helper()
	cfg := kvsim.DefaultClusterConfig()
	cfg.Shards, cfg.Replicas = 2, 1
	cfg.Controller.AutoFailover = false
	cfg.ControllerAPI.Listen = "127.0.0.1:0"
	c, err := kvsim.StartCluster(cfg)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func newClient(t *testing.T, base, namespace, cluster, token string) *Client {
	t.Helper()
	cl, err := New(base, namespace, cluster, token, 10*time.Second)
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return cl
}

// wantCluster is kvsim's topology as the client should read it.
func wantCluster(t kvsim.Topology) *Cluster {
	out := &Cluster{Name: kvsim.DefaultAPICluster, Version: t.Version}
	for _, s := range t.Shards {
		sh := Shard{Master: Node{s.Master.ID, s.Master.Addr}}
		for _, r := range s.Replicas {
			sh.Replicas = append(sh.Replicas, Node{r.ID, r.Addr})
		}
		for _, r := range s.Slots {
			sh.Slots = append(sh.Slots, SlotRange{r.Start, r.End})
		}
		out.Shards = append(out.Shards, sh)
	}
	return out
}

func TestGetClusterAndFailoverAgainstKvsim(t *testing.T) {
	sim := startKvsim(t)
	cl := newClient(t, sim.ControllerAPIURL(), kvsim.DefaultAPINamespace, kvsim.DefaultAPICluster, "")
	ctx := t.Context()

	got, err := cl.GetCluster(ctx)
	require.NoError(t, err)
	assert.Equal(t, wantCluster(sim.Topology()), got)
	assert.Equal(t, int64(1), got.Version)

	replica := got.Shards[1].Replicas[0]
	newMaster, err := cl.FailoverShard(ctx, 1, replica.ID)
	require.NoError(t, err)
	assert.Equal(t, replica.ID, newMaster)
	got, err = cl.GetCluster(ctx)
	require.NoError(t, err)
	assert.Equal(t, wantCluster(sim.Topology()), got)
	assert.Equal(t, int64(2), got.Version)
	assert.Equal(t, replica, got.Shards[1].Master, "roles swapped")

	for _, key := range []string{replica.ID, replica.Addr, got.Shards[1].Replicas[0].Addr} {
		shard, ok := got.ShardOfNode(key)
		assert.True(t, ok, key)
		assert.Equal(t, 1, shard, key)
	}
	shard, ok := got.ShardOfNode(got.Shards[0].Master.ID)
	assert.True(t, ok)
	assert.Equal(t, 0, shard)
	shard, ok = got.ShardOfNode("127.0.0.1:1")
	assert.False(t, ok)
	assert.Equal(t, -1, shard)
}

// requireError asserts err is an *Error with status and message.
func requireError(t *testing.T, err error, status int, message string) *Error {
	t.Helper()
	var ce *Error
	require.True(t, errors.As(err, &ce), "%T %v", err, err)
	assert.Equal(t, status, ce.Status, "%v", err)
	assert.Equal(t, message, ce.Message, "%v", err)
	return ce
}

func TestControllerErrorsCarryStatusAndMessage(t *testing.T) {
	sim := startKvsim(t)
	ctx := t.Context()
	cl := newClient(t, sim.ControllerAPIURL(), kvsim.DefaultAPINamespace, kvsim.DefaultAPICluster, "")

	_, err := newClient(t, sim.ControllerAPIURL(), kvsim.DefaultAPINamespace, "nosuch", "").GetCluster(ctx)
	ce := requireError(t, err, 404, "cluster: not found")
	assert.Equal(t, "controller: cluster: not found (HTTP 404)", ce.Error())
	_, err = newClient(t, sim.ControllerAPIURL(), "nosuch", kvsim.DefaultAPICluster, "").GetCluster(ctx)
	requireError(t, err, 404, "cluster: not found")

	_, err = cl.FailoverShard(ctx, 7, "")
	requireError(t, err, 400, "index out of range")
	_, err = cl.FailoverShard(ctx, 0, "not-an-id")
	requireError(t, err, 400, "invalid node id: not-an-id")

	require.NoError(t, sim.Controller().Kill(sim.Nodes()[1].ID()))
	_, err = cl.FailoverShard(ctx, 0, sim.Nodes()[1].ID())
	requireError(t, err, 500, "no match new master in shard")
	assert.Equal(t, int64(1), sim.Topology().Version)

	// A failover without a preferred node sends "{}", not the empty body
	// upstream refuses with "EOF".
	newMaster, err := cl.FailoverShard(ctx, 1, "")
	require.NoError(t, err)
	assert.Equal(t, sim.Nodes()[3].ID(), newMaster)
}

// Upstream has no authentication; a token goes as a bearer token, for a
// gateway in front of it, and nothing is sent without one.
func TestTokenIsSentAsABearerToken(t *testing.T) {
	sim := startKvsim(t)
	api := sim.Controller().APIHandler("", "")
	var seen []string
	gateway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":{"message":"unauthorized"},"data":null}`))
			return
		}
		api.ServeHTTP(w, r)
	}))
	t.Cleanup(gateway.Close)

	got, err := newClient(t, gateway.URL, kvsim.DefaultAPINamespace, kvsim.DefaultAPICluster, "s3cret").GetCluster(t.Context())
	require.NoError(t, err)
	assert.Len(t, got.Shards, 2)
	_, err = newClient(t, gateway.URL, kvsim.DefaultAPINamespace, kvsim.DefaultAPICluster, "").GetCluster(t.Context())
	requireError(t, err, 401, "unauthorized")
	assert.Equal(t, []string{"Bearer s3cret", ""}, seen)
}

func TestNoAnswerIsAnErrorWithoutStatus(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedURL := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	_, err = newClient(t, closedURL, "ns", "c", "").GetCluster(t.Context())
	ce := requireError(t, err, 0, "cannot reach the controller")
	assert.Error(t, ce.Err, "the cause is kept for logs")
	assert.Contains(t, ce.Error(), "connection refused")

	// A controller that never answers: the call ends at its timeout.
	release := make(chan struct{})
	stalled := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(stalled.Close)
	t.Cleanup(func() { close(release) })
	cl, err := New(stalled.URL, "ns", "c", "", 200*time.Millisecond)
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	_, err = cl.FailoverShard(t.Context(), 0, "")
	ce = requireError(t, err, 0, "no answer from the controller within 200ms")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestAnswersAreBoundedAndChecked(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		body    string
		message string
	}{
		{"too large", 200, `{"data":"` + strings.Repeat("x", MaxResponseBytes) + `"}`, "the controller's answer exceeds 4194304 bytes"},
		{"not JSON", 200, "<html>", "malformed cluster in the controller's answer"},
		{"no cluster", 200, `{"data":{}}`, "malformed cluster in the controller's answer"},
		{"two masters", 200, `{"data":{"cluster":{"version":1,"shards":[{"nodes":[` +
			`{"id":"a","addr":"h:1","role":"master"},{"id":"b","addr":"h:2","role":"master"}]}]}}}`,
			"malformed cluster in the controller's answer"},
		{"leader error as a string", 400, `{"error":"no leader now, please retry later"}`, "no leader now, please retry later"},
		{"no message", 502, "bad gateway", "HTTP 502 Bad Gateway without an error message"},
		{"multi-line message", 500, `{"error":{"message":"a\r\nb"},"data":null}`, "a b"},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(tc.status)
			_, _ = w.Write([]byte(tc.body))
		}))
		_, err := newClient(t, srv.URL, "ns", "c", "").GetCluster(t.Context())
		status := tc.status
		if status == 200 {
			status = 0 // an answer that cannot be read is none
		}
		requireError(t, err, status, tc.message)
		srv.Close()
	}
}

func TestNewRejectsWhatCannotWork(t *testing.T) {
	for _, args := range [][]string{
		{"127.0.0.1:9379", "ns", "c"},
		{"ftp://h:1", "ns", "c"},
		{"http://", "ns", "c"},
		{"http://h:1?x=1", "ns", "c"},
		{"http://h:1", "", "c"},
		{"http://h:1", "ns", ""},
	} {
		_, err := New(args[0], args[1], args[2], "", time.Second)
		assert.Error(t, err, "%v", args)
	}
	_, err := New("http://h:1", "ns", "c", "", 0)
	assert.Error(t, err)
	_, err = New("http://h:1", "ns", "c", "a\nb", time.Second)
	assert.Error(t, err)
	cl, err := New("https://gw.example/kvrocks/", "my ns", "c/1", "", time.Second)
	require.NoError(t, err)
	assert.Equal(t, "https://gw.example/kvrocks/api/v1/namespaces/my%20ns/clusters/c%2F1", cl.clusterURL)
}
