package kvsim

import (
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
)

// SlotCount is the size of the cluster hash-slot space.
const SlotCount = 16384

// SlotRange is an inclusive range of hash slots.
type SlotRange struct {
	Start, End int
}

// String renders the range as CLUSTERX SETNODES and CLUSTER NODES do: "a-b", or "n" for one slot.
func (r SlotRange) String() string {
	if r.Start == r.End {
		return strconv.Itoa(r.Start)
	}
	return strconv.Itoa(r.Start) + "-" + strconv.Itoa(r.End)
}

// Contains reports whether slot is in the range.
func (r SlotRange) Contains(slot int) bool { return slot >= r.Start && slot <= r.End }

// SplitSlots divides the slot space among masters contiguous ranges exactly as
// `redis-cli --cluster create` does: a float32 cursor advancing by 16384/masters,
// each range ending at lround(cursor + per-master - 1), the last one at 16383.
// Matching it byte for byte lets a kvsim cluster and a real Redis Cluster built
// with redis-cli be compared shard for shard.
func SplitSlots(masters int) []SlotRange {
	if masters <= 0 {
		return nil
	}
	perMaster := float32(SlotCount) / float32(masters)
	ranges := make([]SlotRange, 0, masters)
	first := 0
	var cursor float32
	for i := range masters {
		last := int(math.Round(float64(cursor + perMaster - 1)))
		if last > SlotCount || i == masters-1 {
			last = SlotCount - 1
		}
		if last < first {
			last = first
		}
		ranges = append(ranges, SlotRange{Start: first, End: last})
		first = last + 1
		cursor += perMaster
	}
	return ranges
}

// NodeRef names one node of a topology.
type NodeRef struct {
	ID   string // 40 characters
	Addr string // host:port
}

// ShardTopology is one master with its replicas and the slots it serves.
type ShardTopology struct {
	Master   NodeRef
	Replicas []NodeRef
	Slots    []SlotRange
}

// Topology is the whole cluster as a controller knows it and pushes it.
type Topology struct {
	Version int64
	Shards  []ShardTopology
}

// Clone returns a deep copy, so callers can neither see nor cause later changes.
func (t Topology) Clone() Topology {
	out := Topology{Version: t.Version, Shards: make([]ShardTopology, len(t.Shards))}
	for i, s := range t.Shards {
		out.Shards[i] = ShardTopology{
			Master:   s.Master,
			Replicas: append([]NodeRef(nil), s.Replicas...),
			Slots:    append([]SlotRange(nil), s.Slots...),
		}
	}
	return out
}

// Render returns the <nodes> argument of CLUSTERX SETNODES: one line per node,
// "<id> <host> <port> master - <ranges...>" for masters and
// "<id> <host> <port> slave <master-id>" for replicas, joined by "\n".
func (t Topology) Render() string {
	var b strings.Builder
	line := func(n NodeRef) {
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		host, port := splitAddr(n.Addr)
		b.WriteString(n.ID)
		b.WriteByte(' ')
		b.WriteString(host)
		b.WriteByte(' ')
		b.WriteString(port)
	}
	for _, s := range t.Shards {
		line(s.Master)
		b.WriteString(" master -")
		for _, r := range s.Slots {
			b.WriteByte(' ')
			b.WriteString(r.String())
		}
		for _, r := range s.Replicas {
			line(r)
			b.WriteString(" slave ")
			b.WriteString(s.Master.ID)
		}
	}
	return b.String()
}

// allNodes lists every node, shard by shard, master first.
func (t Topology) allNodes() []NodeRef {
	var refs []NodeRef
	for _, s := range t.Shards {
		refs = append(refs, s.Master)
		refs = append(refs, s.Replicas...)
	}
	return refs
}

// promotedSince lists the masters of t that were not masters in prev.
func (t Topology) promotedSince(prev Topology) []NodeRef {
	var promoted []NodeRef
	for _, s := range t.Shards {
		if !slices.ContainsFunc(prev.Shards, func(p ShardTopology) bool { return p.Master == s.Master }) {
			promoted = append(promoted, s.Master)
		}
	}
	return promoted
}

// ShardOfSlot returns the index of the shard serving slot, or -1.
func (t Topology) ShardOfSlot(slot int) int {
	for i, s := range t.Shards {
		for _, r := range s.Slots {
			if r.Contains(slot) {
				return i
			}
		}
	}
	return -1
}

// ShardOfNode returns the index of the shard that node id belongs to, and
// whether it is that shard's master; -1 if the topology does not hold it.
func (t Topology) ShardOfNode(id string) (shard int, master bool) {
	for i, s := range t.Shards {
		if s.Master.ID == id {
			return i, true
		}
		for _, r := range s.Replicas {
			if r.ID == id {
				return i, false
			}
		}
	}
	return -1, false
}

// withPromoted returns the topology one version up in which replica id takes
// over shard's slots and every other node of the shard, the old master first,
// replicates from it.
func (t Topology) withPromoted(shard int, id string) (Topology, error) {
	if shard < 0 || shard >= len(t.Shards) {
		return Topology{}, fmt.Errorf("kvsim: no shard %d", shard)
	}
	next := t.Clone()
	next.Version++
	s := &next.Shards[shard]
	for i, r := range s.Replicas {
		if r.ID != id {
			continue
		}
		replicas := []NodeRef{s.Master}
		replicas = append(replicas, s.Replicas[:i]...)
		replicas = append(replicas, s.Replicas[i+1:]...)
		s.Master, s.Replicas = r, replicas
		return next, nil
	}
	return Topology{}, fmt.Errorf("kvsim: node %s is not a replica of shard %d", id, shard)
}

func splitAddr(addr string) (host, port string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, ""
	}
	return host, port
}
