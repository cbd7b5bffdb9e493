// Package controller is kvproxy's client of the kvrocks-controller HTTP API
// (apache/kvrocks-controller): it reads a cluster's topology and asks for a
// shard's failover.
//
// The calls used, with upstream's shapes:
//
//	GET  {base}/api/v1/namespaces/{ns}/clusters/{cluster}
//	     200 {"data":{"cluster":{"version":N,"name":...,"shards":[{"nodes":[{"id","addr","role"...}],"slot_ranges":["0-5460"]...}]}}}
//	POST {base}/api/v1/namespaces/{ns}/clusters/{cluster}/shards/{index}/failover
//	     body {"preferred_node_id":"<40 chars>"}, 200 {"data":{"new_master_id":"..."}}
//
// and every error as {"error":{"message":...},"data":null} with a 4xx or 5xx
// status. Upstream has no authentication: a token, when set, is sent as
// "Authorization: Bearer <token>" for a gateway in front of it.
package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MaxResponseBytes bounds what a call reads of an answer; a cluster of
// thousands of nodes takes a fraction of it.
const MaxResponseBytes = 4 << 20

// Client calls one controller about one cluster. It is safe for concurrent use.
type Client struct {
	clusterURL string // {base}/api/v1/namespaces/{ns}/clusters/{cluster}
	token      string
	timeout    time.Duration
	http       *http.Client
}

// New returns a client of the controller at baseURL (http or https, e.g.
// "http://127.0.0.1:9379", a path prefix allowed) for cluster of namespace.
// token, when not empty, is sent as a bearer token. timeout bounds each call,
// a failover included: it must exceed the controller's write pause.
func New(baseURL, namespace, cluster, token string, timeout time.Duration) (*Client, error) {
	u, err := url.Parse(baseURL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("controller: URL %q is not http(s)://host[:port][/path]", baseURL)
	case namespace == "" || cluster == "":
		return nil, errors.New("controller: namespace and cluster must not be empty")
	case timeout <= 0:
		return nil, fmt.Errorf("controller: timeout must be positive, not %v", timeout)
	case strings.ContainsAny(token, "\r\n"):
		return nil, errors.New("controller: token must not contain line breaks")
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 4
	return &Client{
		clusterURL: strings.TrimRight(u.String(), "/") + "/api/v1/namespaces/" + url.PathEscape(namespace) +
			"/clusters/" + url.PathEscape(cluster),
		token:   token,
		timeout: timeout,
		http:    &http.Client{Transport: transport},
	}, nil
}

// Close drops the client's idle connections. The client may still be used.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Error is a failed call: the controller's refusal, or why no usable answer
// came. Message is one line meant for clients, as the controller wrote it
// or, without an answer, in kvproxy's words; Error() adds the cause for logs.
type Error struct {
	// Status is the HTTP status of the controller's answer; 0 when there
	// was none (unreachable, timed out) or it was unreadable.
	Status  int
	Message string
	// Err is the cause of a call that got no usable answer, for logs.
	Err error
}

func (e *Error) Error() string {
	s := "controller: " + e.Message
	if e.Status != 0 {
		s += " (HTTP " + strconv.Itoa(e.Status) + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// oneLine keeps a message on one line, bounded, for a RESP error.
func oneLine(s string) string {
	const max = 512
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}

// Node is one node of a shard.
type Node struct {
	ID   string // 40 characters as kvrocks-controller makes them
	Addr string // host:port
}

// SlotRange is an inclusive range of hash slots.
type SlotRange struct{ Start, End int }

// Shard is one master, its replicas and the slots it serves.
type Shard struct {
	Master   Node
	Replicas []Node
	Slots    []SlotRange
}

// Cluster is a cluster as the controller records it.
type Cluster struct {
	Name    string
	Version int64
	Shards  []Shard
}

// ShardOfNode returns the index of the shard holding the node whose id or
// host:port is idOrAddr, master or replica, and false if none does.
func (c *Cluster) ShardOfNode(idOrAddr string) (int, bool) {
	for i, s := range c.Shards {
		for _, n := range append([]Node{s.Master}, s.Replicas...) {
			if n.ID == idOrAddr || n.Addr == idOrAddr {
				return i, true
			}
		}
	}
	return -1, false
}

// GetCluster reads the cluster's topology.
func (c *Client) GetCluster(ctx context.Context) (*Cluster, error) {
	body, err := c.call(ctx, http.MethodGet, c.clusterURL, nil)
	if err != nil {
		return nil, err
	}
	cl, err := decodeCluster(body)
	if err != nil {
		return nil, &Error{Message: "malformed cluster in the controller's answer", Err: err}
	}
	return cl, nil
}

// FailoverShard asks the controller to fail shard shardIndex over to
// preferredNodeID (empty: the replica it finds best) and returns the id of
// the new master. The controller may promote another replica than the
// preferred one, as upstream does when that one is no eligible replica of
// the shard: callers compare.
func (c *Client) FailoverShard(ctx context.Context, shardIndex int, preferredNodeID string) (string, error) {
	req := struct {
		PreferredNodeID string `json:"preferred_node_id,omitempty"`
	}{preferredNodeID}
	payload, err := json.Marshal(req) // never fails: one string
	if err != nil {
		return "", &Error{Message: "cannot encode the failover request", Err: err}
	}
	body, err := c.call(ctx, http.MethodPost, c.clusterURL+"/shards/"+strconv.Itoa(shardIndex)+"/failover", payload)
	if err != nil {
		return "", err
	}
	var resp struct {
		Data struct {
			NewMasterID string `json:"new_master_id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil || resp.Data.NewMasterID == "" {
		if err == nil {
			err = errors.New("no data.new_master_id")
		}
		return "", &Error{Message: "malformed failover answer from the controller", Err: err}
	}
	return resp.Data.NewMasterID, nil
}

// call sends one request and returns the body of a 2xx answer, at most
// MaxResponseBytes; any failure is an *Error.
func (c *Client) call(ctx context.Context, method, target string, payload []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, &Error{Message: "cannot build a request to the controller", Err: err}
	}
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, c.transportError(ctx, err)
	}
	if len(data) > MaxResponseBytes {
		return nil, &Error{Message: fmt.Sprintf("the controller's answer exceeds %d bytes", MaxResponseBytes),
			Err: fmt.Errorf("HTTP %d", resp.StatusCode)}
	}
	if resp.StatusCode/100 != 2 {
		return nil, &Error{Status: resp.StatusCode, Message: errorMessage(resp.StatusCode, data)}
	}
	return data, nil
}

// transportError words a call that got no answer.
func (c *Client) transportError(ctx context.Context, err error) *Error {
	var netErr net.Error
	if ctx.Err() != nil || errors.As(err, &netErr) && netErr.Timeout() {
		return &Error{Message: fmt.Sprintf("no answer from the controller within %v", c.timeout), Err: err}
	}
	return &Error{Message: "cannot reach the controller", Err: err}
}

// errorMessage is the message of an error answer: upstream's
// {"error":{"message":...}}, or {"error":"..."} (its leader redirection), or
// the status when the body has neither.
func errorMessage(status int, body []byte) string {
	var resp struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &resp) == nil && len(resp.Error) > 0 {
		var obj struct {
			Message string `json:"message"`
		}
		var text string
		switch {
		case json.Unmarshal(resp.Error, &obj) == nil && obj.Message != "":
			return oneLine(obj.Message)
		case json.Unmarshal(resp.Error, &text) == nil && text != "":
			return oneLine(text)
		}
	}
	return "HTTP " + strconv.Itoa(status) + " " + http.StatusText(status) + " without an error message"
}
