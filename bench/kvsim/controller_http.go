package kvsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The controller's HTTP API is the part of kvrocks-controller's
// (apache/kvrocks-controller, server/route.go) that operators and kvproxy
// use, with its paths, JSON shapes, status codes and error texts:
//
//	GET  /api/v1/namespaces
//	GET  /api/v1/namespaces/{ns}
//	GET  /api/v1/namespaces/{ns}/clusters
//	GET  /api/v1/namespaces/{ns}/clusters/{cluster}
//	GET  /api/v1/namespaces/{ns}/clusters/{cluster}/shards
//	GET  /api/v1/namespaces/{ns}/clusters/{cluster}/shards/{shard}
//	POST /api/v1/namespaces/{ns}/clusters/{cluster}/shards/{shard}/failover
//
// Answers are {"data": ...}, errors {"error":{"message":...},"data":null}.
// The one namespace holds the one cluster, the controller's topology. A
// failover is the CLIENT PAUSE one (FailoverShard), as kvrocks-controller
// runs it with failover.wait_for_sync set.

// Names the API serves when ControllerAPIConfig leaves them empty.
const (
	DefaultAPINamespace = "kvsim"
	DefaultAPICluster   = "kvsim"
)

// ControllerAPIConfig configures the controller's HTTP API.
type ControllerAPIConfig struct {
	// Listen is the host:port the API listens on ("127.0.0.1:0" takes a
	// free port); empty starts no API.
	Listen string
	// Namespace and Cluster name the cluster in the API's paths; empty
	// means DefaultAPINamespace and DefaultAPICluster.
	Namespace, Cluster string
}

// names returns the namespace and cluster with the defaults filled in.
func (c ControllerAPIConfig) names() (namespace, cluster string) {
	namespace, cluster = c.Namespace, c.Cluster
	if namespace == "" {
		namespace = DefaultAPINamespace
	}
	if cluster == "" {
		cluster = DefaultAPICluster
	}
	return namespace, cluster
}

// Validate reports a listen address that is no host:port and names that
// cannot be one segment of a URL path.
func (c ControllerAPIConfig) Validate() error {
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			return fmt.Errorf("controller API listen address: %w", err)
		}
	}
	namespace, cluster := c.names()
	for _, name := range []string{namespace, cluster} {
		if strings.ContainsAny(name, "/?#% \t\r\n") {
			return fmt.Errorf("controller API name %q must not contain '/', '?', '#', '%%' or spaces", name)
		}
	}
	return nil
}

// Error texts of kvrocks-controller (consts/errors.go and its handlers).
const (
	apiNotFound          = "not found"
	apiNamespaceNotFound = "namespace not found"
	apiClusterNotFound   = "cluster: not found"
	apiIndexOutOfRange   = "index out of range"
	apiNoReplica         = "no replica in shard"
	apiNoNewMaster       = "no match new master in shard"
)

// apiMaxBody bounds a request body; kvsim's requests are a few bytes.
const apiMaxBody = 64 << 10

// The JSON shapes of kvrocks-controller: server/helper's Response, store's
// Cluster (version first, from its MarshalJSON), Shard, and ClusterNode,
// whose MarshalJSON marshals a map, so its keys come sorted.
type (
	apiResponse struct {
		Error *apiError `json:"error,omitempty"`
		Data  any       `json:"data"`
	}
	apiError struct {
		Message string `json:"message"`
	}
	apiCluster struct {
		Version int64      `json:"version"`
		Name    string     `json:"name"`
		Shards  []apiShard `json:"shards"`
	}
	apiShard struct {
		Nodes            []apiNode `json:"nodes"`
		SlotRanges       []string  `json:"slot_ranges"`
		TargetShardIndex int       `json:"target_shard_index"`
		MigratingSlot    *string   `json:"migrating_slot"` // kvsim migrates no slots: always null
	}
	apiNode struct {
		Addr      string `json:"addr"`
		CreatedAt int64  `json:"created_at"`
		ID        string `json:"id"`
		Password  string `json:"password"`
		Role      string `json:"role"`
	}
	// apiFailoverRequest is the failover request's body; Options override
	// the controller's failover timeouts (0 keeps them).
	apiFailoverRequest struct {
		PreferredNodeID string `json:"preferred_node_id"`
		Options         *struct {
			ForceOnTimeout bool `json:"force_on_timeout"`
			SyncTimeoutMs  int  `json:"sync_timeout_ms"`
			PauseTimeoutMs int  `json:"pause_timeout_ms"`
		} `json:"options"`
	}
)

// controllerAPI serves the HTTP API of one controller.
type controllerAPI struct {
	ctrl               *Controller
	namespace, cluster string
	mux                *http.ServeMux
}

// APIHandler returns the controller's HTTP API (see ControllerAPIConfig),
// with namespace and cluster as the names in its paths; empty names take the
// defaults.
func (c *Controller) APIHandler(namespace, cluster string) http.Handler {
	a := &controllerAPI{ctrl: c, mux: http.NewServeMux()}
	a.namespace, a.cluster = ControllerAPIConfig{Namespace: namespace, Cluster: cluster}.names()
	const ns = "/api/v1/namespaces"
	const cl = ns + "/{namespace}/clusters/{cluster}"
	a.mux.HandleFunc("GET "+ns, a.listNamespaces)
	a.mux.HandleFunc("GET "+ns+"/{namespace}", a.namespaceExists)
	a.mux.HandleFunc("GET "+ns+"/{namespace}/clusters", a.listClusters)
	a.mux.HandleFunc("GET "+cl, a.getCluster)
	a.mux.HandleFunc("GET "+cl+"/shards", a.listShards)
	a.mux.HandleFunc("GET "+cl+"/shards/{shard}", a.getShard)
	a.mux.HandleFunc("POST "+cl+"/shards/{shard}/failover", a.failover)
	// Like gin without HandleMethodNotAllowed: a wrong method is not found too.
	a.mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeAPIError(w, http.StatusNotFound, apiNotFound)
	})
	return a.mux
}

func writeAPI(w http.ResponseWriter, code int, resp apiResponse) {
	body, err := json.Marshal(resp)
	if err != nil { // the shapes above always marshal
		code, body = http.StatusInternalServerError, []byte(`{"error":{"message":"kvsim: encoding the answer failed"},"data":null}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

func writeAPIData(w http.ResponseWriter, data any) {
	writeAPI(w, http.StatusOK, apiResponse{Data: data})
}

func writeAPIError(w http.ResponseWriter, code int, message string) {
	writeAPI(w, code, apiResponse{Error: &apiError{Message: message}})
}

func (a *controllerAPI) listNamespaces(w http.ResponseWriter, _ *http.Request) {
	writeAPIData(w, map[string]any{"namespaces": []string{a.namespace}})
}

func (a *controllerAPI) namespaceExists(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("namespace") != a.namespace {
		writeAPIError(w, http.StatusNotFound, apiNotFound)
		return
	}
	writeAPIData(w, nil)
}

func (a *controllerAPI) listClusters(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("namespace") != a.namespace {
		writeAPIError(w, http.StatusBadRequest, apiNamespaceNotFound)
		return
	}
	writeAPIData(w, map[string]any{"clusters": []string{a.cluster}})
}

// requiredCluster is upstream's middleware of the same name: the topology
// if the path names the cluster, else false and the error is written.
func (a *controllerAPI) requiredCluster(w http.ResponseWriter, r *http.Request) (Topology, bool) {
	if r.PathValue("namespace") != a.namespace || r.PathValue("cluster") != a.cluster {
		writeAPIError(w, http.StatusNotFound, apiClusterNotFound)
		return Topology{}, false
	}
	return a.ctrl.Topology(), true
}

// requiredClusterShard is upstream's middleware of the same name: the
// topology and the shard index the path names, else false and the error is
// written.
func (a *controllerAPI) requiredClusterShard(w http.ResponseWriter, r *http.Request) (Topology, int, bool) {
	t, ok := a.requiredCluster(w, r)
	if !ok {
		return t, 0, false
	}
	shard, err := strconv.Atoi(r.PathValue("shard"))
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, err.Error())
		return t, 0, false
	}
	if shard < 0 || shard >= len(t.Shards) {
		writeAPIError(w, http.StatusBadRequest, apiIndexOutOfRange)
		return t, 0, false
	}
	return t, shard, true
}

func (a *controllerAPI) getCluster(w http.ResponseWriter, r *http.Request) {
	if t, ok := a.requiredCluster(w, r); ok {
		writeAPIData(w, map[string]any{"cluster": a.apiCluster(t)})
	}
}

func (a *controllerAPI) listShards(w http.ResponseWriter, r *http.Request) {
	if t, ok := a.requiredCluster(w, r); ok {
		writeAPIData(w, map[string]any{"shards": a.apiCluster(t).Shards})
	}
}

func (a *controllerAPI) getShard(w http.ResponseWriter, r *http.Request) {
	if t, shard, ok := a.requiredClusterShard(w, r); ok {
		writeAPIData(w, map[string]any{"shard": a.apiShard(t.Shards[shard])})
	}
}

func (a *controllerAPI) apiCluster(t Topology) apiCluster {
	out := apiCluster{Version: t.Version, Name: a.cluster, Shards: make([]apiShard, len(t.Shards))}
	for i, s := range t.Shards {
		out.Shards[i] = a.apiShard(s)
	}
	return out
}

// apiShard lists the shard's nodes in creation order, as kvrocks-controller
// keeps them in place and swaps their roles.
func (a *controllerAPI) apiShard(s ShardTopology) apiShard {
	out := apiShard{TargetShardIndex: -1, SlotRanges: make([]string, len(s.Slots))}
	for i, r := range s.Slots {
		out.SlotRanges[i] = r.String()
	}
	node := func(ref NodeRef, role string) apiNode {
		return apiNode{Addr: ref.Addr, CreatedAt: a.ctrl.createdAt, ID: ref.ID, Password: a.ctrl.password, Role: role}
	}
	out.Nodes = append(out.Nodes, node(s.Master, "master"))
	for _, r := range s.Replicas {
		out.Nodes = append(out.Nodes, node(r, "slave"))
	}
	slices.SortStableFunc(out.Nodes, func(x, y apiNode) int { return a.ctrl.rank[x.ID] - a.ctrl.rank[y.ID] })
	return out
}

// failover is upstream's shard failover: the body is required JSON (an empty
// one is "EOF"), a preferred node id must have 40 characters, and a preferred
// node that is no replica of the shard, or does not answer as one, is
// ignored: the replica with the highest sequence is promoted instead. The
// answer names the new master.
func (a *controllerAPI) failover(w http.ResponseWriter, r *http.Request) {
	t, shard, ok := a.requiredClusterShard(w, r)
	if !ok {
		return
	}
	var req apiFailoverRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, apiMaxBody)).Decode(&req); err != nil {
		writeAPIError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.PreferredNodeID != "" && len(req.PreferredNodeID) != 40 {
		writeAPIError(w, http.StatusBadRequest, "invalid node id: "+req.PreferredNodeID)
		return
	}
	opts := a.ctrl.cfg.Failover
	if o := req.Options; o != nil {
		if o.SyncTimeoutMs > 0 {
			opts.SyncTimeout = time.Duration(o.SyncTimeoutMs) * time.Millisecond
		}
		if o.PauseTimeoutMs > 0 {
			opts.PauseTimeout = time.Duration(o.PauseTimeoutMs) * time.Millisecond
		}
		opts.Force = o.ForceOnTimeout
	}
	s := t.Shards[shard]
	if len(s.Replicas) == 0 {
		writeAPIError(w, http.StatusInternalServerError, apiNoReplica)
		return
	}
	opts.Replica = req.PreferredNodeID
	if opts.PauseTimeout <= opts.SyncTimeout {
		writeAPIError(w, http.StatusInternalServerError,
			fmt.Sprintf("PauseDuration (%v) must be greater than SyncTimeout (%v)", opts.PauseTimeout, opts.SyncTimeout))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*a.ctrl.cfg.CommandTimeout+opts.PauseTimeout)
	defer cancel()
	res, err := a.ctrl.failoverShard(ctx, shard, opts, true)
	switch {
	case err == nil || res.committed: // upstream answers once the topology is stored
		writeAPIData(w, map[string]any{"new_master_id": res.newMaster.ID})
	case errors.Is(err, ErrNoShard):
		writeAPIError(w, http.StatusBadRequest, apiIndexOutOfRange)
	case errors.Is(err, ErrNoReplica):
		writeAPIError(w, http.StatusInternalServerError, apiNoNewMaster)
	case errors.Is(err, ErrSyncTimeout):
		writeAPIError(w, http.StatusInternalServerError,
			fmt.Sprintf("replication sync timeout: slave %s did not catch up within %v", res.newMaster.Addr, opts.SyncTimeout))
	default:
		writeAPIError(w, http.StatusInternalServerError, err.Error())
	}
}

// apiServer is a running HTTP server of the controller's API.
type apiServer struct {
	srv    *http.Server
	addr   string
	cancel context.CancelFunc // ends the requests in flight
	done   chan struct{}
}

// startAPIServer listens on cfg.Listen and serves ctrl's API until close.
func startAPIServer(ctrl *Controller, cfg ControllerAPIConfig) (*apiServer, error) {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("controller API: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	namespace, cluster := cfg.names()
	s := &apiServer{
		srv: &http.Server{
			Handler:           ctrl.APIHandler(namespace, cluster),
			ReadHeaderTimeout: 10 * time.Second,
			BaseContext:       func(net.Listener) context.Context { return ctx },
		},
		addr:   ln.Addr().String(),
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln) // ErrServerClosed once closed
	}()
	return s, nil
}

// close cancels the requests in flight, waits for their handlers and stops
// the server.
func (s *apiServer) close(wait time.Duration) {
	s.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if s.srv.Shutdown(ctx) != nil {
		_ = s.srv.Close()
	}
	<-s.done
}
