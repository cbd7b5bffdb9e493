package soak

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"kvproxy/bench/kvsim"
	"kvproxy/controller"
	"kvproxy/internal/resp"
)

// ViewCheck compares, at the end of a run, who masters each slot range in
// the controller's view (its HTTP API), in every node's (CLUSTER NODES and
// CLUSTERX VERSION, asked directly) and in the proxy's (PROXY NODES).
type ViewCheck struct {
	// Version is the controller's topology version, -1 when it could not
	// be read.
	Version int64
	// Masters are the controller's masters by slot range.
	Masters string
	// Waited is how long the views took to agree, or how long the check
	// waited for them.
	Waited time.Duration
	// Disagreements are what differed at the last look; empty when every
	// view agreed.
	Disagreements []string
}

// viewSettle bounds the wait for the views to agree: a node the controller
// could not push to gets the topology at its next probe (3 s), and the
// proxy, idle once the load stopped, at its next reload (10 s by default).
const viewSettle = 15 * time.Second

// viewPoll is the pause between two looks at the views.
const viewPoll = 200 * time.Millisecond

// checkViews looks at the views until they agree or viewSettle is over.
func checkViews(ctx context.Context, api *controller.Client, sim *kvsim.Cluster, proxy *redis.Client, timeout time.Duration) ViewCheck {
	nodes := map[string]*redis.Client{}
	for _, n := range sim.Nodes() {
		nodes[n.Addr()] = redis.NewClient(&redis.Options{
			Addr: n.Addr(), Protocol: 2, DisableIdentity: true, MaxRetries: -1,
			DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, PoolSize: 1,
		})
	}
	defer func() {
		for _, cl := range nodes {
			_ = cl.Close()
		}
	}()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, viewSettle)
	defer cancel()
	for {
		check := compareViews(ctx, api, nodes, proxy)
		check.Waited = time.Since(start)
		if len(check.Disagreements) == 0 {
			return check
		}
		select {
		case <-ctx.Done():
			return check
		case <-time.After(viewPoll):
		}
	}
}

// compareViews looks at every view once. nodes are clients of every node,
// by address.
func compareViews(ctx context.Context, api *controller.Client, nodes map[string]*redis.Client, proxy *redis.Client) ViewCheck {
	check := ViewCheck{Version: -1}
	cl, err := api.GetCluster(ctx)
	if err != nil {
		check.Disagreements = append(check.Disagreements, "controller: "+err.Error())
		return check
	}
	check.Version = cl.Version
	want := controllerMasters(cl)
	check.Masters = want.String()
	for _, addr := range slices.Sorted(maps.Keys(nodes)) {
		node := nodes[addr]
		version, err := node.Do(ctx, "CLUSTERX", "VERSION").Text()
		if err != nil {
			check.Disagreements = append(check.Disagreements, fmt.Sprintf("node %s: CLUSTERX VERSION: %v", addr, err))
		} else if version != strconv.FormatInt(cl.Version, 10) {
			check.Disagreements = append(check.Disagreements,
				fmt.Sprintf("node %s: version %s, the controller's %d", addr, version, cl.Version))
		}
		text, err := node.ClusterNodes(ctx).Result()
		check.disagree("node "+addr+": CLUSTER NODES", want, text, err)
	}
	text, err := proxy.Do(ctx, "PROXY", "NODES").Text()
	check.disagree("proxy: PROXY NODES", want, text, err)
	return check
}

// disagree notes a view, CLUSTER NODES text, whose masters are not want.
func (c *ViewCheck) disagree(view string, want slotMasters, text string, err error) {
	if err != nil {
		c.Disagreements = append(c.Disagreements, fmt.Sprintf("%s: %v", view, err))
		return
	}
	if got := parseSlotMasters(text); !slices.Equal(got, want) {
		c.Disagreements = append(c.Disagreements, fmt.Sprintf("%s: %s, the controller's %s", view, got, want))
	}
}

// slotMaster is a range of slots and the id of its master.
type slotMaster struct {
	Start, End int
	Master     string
}

// slotMasters are the masters of slot ranges, sorted, adjacent ranges of
// one master merged.
type slotMasters []slotMaster

func (s slotMasters) String() string {
	parts := make([]string, len(s))
	for i, r := range s {
		parts[i] = fmt.Sprintf("%d-%d %s", r.Start, r.End, shortID(r.Master))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// shortID is a node id's first 8 characters, as logs show it.
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// normalize sorts the ranges and merges adjacent ones of one master.
func (s slotMasters) normalize() slotMasters {
	slices.SortFunc(s, func(a, b slotMaster) int { return cmp.Compare(a.Start, b.Start) })
	var out slotMasters
	for _, r := range s {
		if n := len(out); n > 0 && out[n-1].Master == r.Master && out[n-1].End+1 == r.Start {
			out[n-1].End = r.End
			continue
		}
		out = append(out, r)
	}
	return out
}

func controllerMasters(cl *controller.Cluster) slotMasters {
	var s slotMasters
	for _, shard := range cl.Shards {
		for _, r := range shard.Slots {
			s = append(s, slotMaster{r.Start, r.End, shard.Master.ID})
		}
	}
	return s.normalize()
}

// parseSlotMasters reads the masters' slots from CLUSTER NODES text (see
// resp.ClusterNodes), a slot being "a-b" or "n"; short lines, and migrating
// and importing entries ("[...]"), are skipped.
func parseSlotMasters(text string) slotMasters {
	var s slotMasters
	for line, err := range resp.ClusterNodes(text) {
		if err != nil || !line.HasFlag("master") {
			continue
		}
		for _, slot := range line.Slots {
			lo, hi, isRange := strings.Cut(slot, "-")
			if !isRange {
				hi = lo
			}
			start, err1 := strconv.Atoi(lo)
			end, err2 := strconv.Atoi(hi)
			if err1 == nil && err2 == nil {
				s = append(s, slotMaster{start, end, line.ID})
			}
		}
	}
	return s.normalize()
}
