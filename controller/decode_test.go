package controller

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDecodeClusterReadsUpstreamShapes(t *testing.T) {
	// Nodes in place with roles swapped, unmerged ranges, a single slot, an
	// older controller's {"start","stop"} ranges, fields kvproxy ignores.
	body := `{"data":{"cluster":{"version":3,"name":"c1","shards":[` +
		`{"nodes":[{"addr":"10.0.0.1:7001","created_at":1,"id":"a","password":"p","role":"slave"},` +
		`{"addr":"10.0.0.1:7002","created_at":1,"id":"b","password":"p","role":"master"}],` +
		`"slot_ranges":["0-100","101","102-8191"],"target_shard_index":-1,"migrating_slot":null},` +
		`{"nodes":[{"addr":"[::1]:7003","id":"c","role":"master","status":"ok"}],` +
		`"slot_ranges":[{"start":8192,"stop":16383}],"migrating_slot":-1}]}}}`
	got, err := decodeCluster([]byte(body))
	require.NoError(t, err)
	assert.Equal(t, &Cluster{Name: "c1", Version: 3, Shards: []Shard{
		{Master: Node{"b", "10.0.0.1:7002"}, Replicas: []Node{{"a", "10.0.0.1:7001"}},
			Slots: []SlotRange{{0, 100}, {101, 101}, {102, 8191}}},
		{Master: Node{"c", "[::1]:7003"}, Slots: []SlotRange{{8192, 16383}}},
	}}, got)
}

func TestDecodeClusterRejectsMalformedClusters(t *testing.T) {
	node := func(id, addr, role string) string {
		return `{"id":"` + id + `","addr":"` + addr + `","role":"` + role + `"}`
	}
	shard := func(ranges string, nodes ...string) string {
		s := `{"nodes":[`
		for i, n := range nodes {
			if i > 0 {
				s += ","
			}
			s += n
		}
		return s + `],"slot_ranges":[` + ranges + `]}`
	}
	cluster := func(shards string) string { return `{"data":{"cluster":{"version":1,"shards":[` + shards + `]}}}` }
	for name, body := range map[string]string{
		"not JSON":      `nope`,
		"no cluster":    `{"data":null}`,
		"no version":    `{"data":{"cluster":{"shards":[]}}}`,
		"no master":     cluster(shard(`"0-1"`, node("a", "h:1", "slave"))),
		"two masters":   cluster(shard(`"0-1"`, node("a", "h:1", "master"), node("b", "h:2", "master"))),
		"bad role":      cluster(shard(`"0-1"`, node("a", "h:1", "leader"))),
		"no id":         cluster(shard(`"0-1"`, node("", "h:1", "master"))),
		"bad addr":      cluster(shard(`"0-1"`, node("a", "h", "master"))),
		"empty host":    cluster(shard(`"0-1"`, node("a", ":1", "master"))),
		"slot too high": cluster(shard(`"0-16384"`, node("a", "h:1", "master"))),
		"reversed":      cluster(shard(`"9-1"`, node("a", "h:1", "master"))),
		"not a range":   cluster(shard(`"a-b"`, node("a", "h:1", "master"))),
		"bad object":    cluster(shard(`{"start":1}`, node("a", "h:1", "master"))),
		"number":        cluster(shard(`7`, node("a", "h:1", "master"))),
	} {
		_, err := decodeCluster([]byte(body))
		assert.Error(t, err, name)
	}
}

// FuzzDecodeCluster: decoding never panics, and what it accepts holds what
// kvproxy relies on: one master per shard, ids and host:port addresses, slot
// ranges within the slot space.
func FuzzDecodeCluster(f *testing.F) {
	f.Add([]byte(`{"data":{"cluster":{"version":2,"name":"c","shards":[{"nodes":[{"id":"a","addr":"h:1","role":"master"}],"slot_ranges":["0-16383"]}]}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		cl, err := decodeCluster(body)
		if err != nil {
			return
		}
		for i, s := range cl.Shards {
			for _, n := range append([]Node{s.Master}, s.Replicas...) {
				if n.ID == "" || n.Addr == "" {
					t.Fatalf("shard %d: node %+v without id or address", i, n)
				}
				if got, ok := cl.ShardOfNode(n.ID); !ok || got > i {
					t.Fatalf("ShardOfNode(%q) = %d, %v; the node is in shard %d", n.ID, got, ok, i)
				}
			}
			for _, r := range s.Slots {
				if r.Start < 0 || r.End >= slotCount || r.Start > r.End {
					t.Fatalf("shard %d: slot range %+v", i, r)
				}
			}
		}
	})
}
