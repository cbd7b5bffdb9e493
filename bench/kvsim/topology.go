package kvsim

import (
	"errors"
	"strconv"
	"strings"
)

// Errors of CLUSTERX SETNODES, worded byte for byte as Kvrocks words them.
var (
	errNodesInfo     = errors.New("ERR Invalid cluster nodes info")
	errNodeID        = errors.New("ERR Invalid cluster node id")
	errNodePort      = errors.New("ERR Invalid cluster node port")
	errNodeRole      = errors.New("ERR Invalid cluster node role")
	errSlotRange     = errors.New("ERR Slot is out of range")
	errSlotOverlap   = errors.New("ERR Slot distribution is overlapped")
	errClusterVer    = errors.New("ERR Invalid cluster version")
	errVersionSyntax = errors.New("ERR Invalid version")
)

// slotSpan is one slot range as a SETNODES line lists it (never merged).
type slotSpan struct{ start, end int }

// viewNode is one node record of a topology. The slot table points at these
// records, and a record belongs to the topology (gen) that created it: slots a
// newer topology leaves out keep pointing at the older records.
type viewNode struct {
	gen      uint64
	id       string
	host     string
	port     int
	addr     string // host:port, what MOVED names
	master   bool
	masterID string     // replicas only
	spans    []slotSpan // masters only
	replicas []*viewNode
}

// parsedTopology is the result of parsing a SETNODES body.
type parsedTopology struct {
	nodes []*viewNode // in line order, duplicates included
	owner map[int]*viewNode
}

// parseClusterNodes parses a SETNODES body following Kvrocks' rules: lines of
// "<id> <host> <port> master - <ranges...>" or "<id> <host> <port> slave|replica
// <master-id>". A duplicate id or a replica of an unknown master is accepted.
func parseClusterNodes(body string, gen uint64) (*parsedTopology, error) {
	pt := &parsedTopology{owner: map[int]*viewNode{}}
	byID := map[string]*viewNode{}
	for _, line := range strings.Split(body, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) < 5 {
			return nil, errNodesInfo
		}
		nd := &viewNode{gen: gen, id: fields[0], host: fields[1]}
		if len(nd.id) != 40 {
			return nil, errNodeID
		}
		port, err := strconv.Atoi(fields[2])
		if err != nil || port <= 0 || port > 65535 {
			return nil, errNodePort
		}
		nd.port = port
		nd.addr = nd.host + ":" + fields[2]
		switch strings.ToLower(fields[3]) {
		case "master":
			nd.master = true
		case "slave", "replica":
		default:
			return nil, errNodeRole
		}
		if nd.master && fields[4] != "-" || !nd.master && len(fields[4]) != 40 {
			return nil, errNodeID
		}
		if !nd.master {
			if len(fields) != 5 {
				return nil, errNodesInfo
			}
			nd.masterID = fields[4]
		}
		for _, r := range fields[5:] {
			span, err := parseSlotSpan(r)
			if err != nil {
				return nil, err
			}
			for s := span.start; s <= span.end; s++ {
				if pt.owner[s] != nil {
					return nil, errSlotOverlap
				}
				pt.owner[s] = nd
			}
			nd.spans = append(nd.spans, span)
		}
		pt.nodes = append(pt.nodes, nd)
		byID[nd.id] = nd
	}
	for _, nd := range pt.nodes {
		if m := byID[nd.masterID]; !nd.master && m != nil {
			m.replicas = append(m.replicas, nd)
		}
	}
	return pt, nil
}

func parseSlotSpan(s string) (slotSpan, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		hi = lo
	}
	start, err1 := strconv.Atoi(lo)
	end, err2 := strconv.Atoi(hi)
	if err1 != nil || err2 != nil || start < 0 || end >= numSlots || start > end {
		return slotSpan{}, errSlotRange
	}
	return slotSpan{start, end}, nil
}

// clusterView is an immutable snapshot of what the node knows about the
// cluster. The hot path loads it with one atomic read; every change builds a
// new one.
type clusterView struct {
	version int64  // -1 before any topology
	myID    string // set by CLUSTERX SETNODEID (or NodeConfig.ID)
	idSet   bool   // SETNODEID received: CLUSTERX MYID answers empty before
	gen     uint64 // generation of the current topology's records
	nodes   []*viewNode
	slots   *[numSlots]*viewNode
	me      *viewNode // my record in the current topology, nil if absent
	// myMaster is my master's record if I am a replica of a known master.
	myMaster *viewNode
	// migratedTo is set after a successful CLUSTERX FAILOVER: every slot I own
	// answers MOVED to this host:port.
	migratedTo string
	// takeover is set by CLUSTERX TAKEOVER: I serve my master's slots.
	takeover bool
}

func newClusterView(myID string, idSet bool) *clusterView {
	return &clusterView{version: -1, myID: myID, idSet: idSet, slots: new([numSlots]*viewNode)}
}

func (v *clusterView) isReplica() bool { return v.me != nil && !v.me.master }

func (v *clusterView) isMaster() bool { return !v.isReplica() }

// owns reports whether slot belongs to me in the current topology.
func (v *clusterView) owns(owner *viewNode) bool {
	return owner.gen == v.gen && owner.id == v.myID
}

// masterOwns reports whether slot belongs to my master in the current topology.
func (v *clusterView) masterOwns(owner *viewNode) bool {
	return v.myMaster != nil && owner.gen == v.gen && owner.id == v.myMaster.id
}

// withID returns a copy of v whose identity is id, with me/myMaster resolved.
func (v *clusterView) withID(id string) *clusterView {
	nv := *v
	nv.myID, nv.idSet = id, true
	nv.resolveMe()
	return &nv
}

func (v *clusterView) resolveMe() {
	v.me, v.myMaster = nil, nil
	for _, nd := range v.nodes {
		if nd.id == v.myID {
			v.me = nd
		}
	}
	if v.me != nil && !v.me.master {
		for _, nd := range v.nodes {
			if nd.id == v.me.masterID && nd.master {
				v.myMaster = nd
			}
		}
	}
}

// withTopology returns the view after applying pt: the slots pt assigns point
// at its records, other slots keep their previous owners, and the failover
// redirects are cleared.
func (v *clusterView) withTopology(pt *parsedTopology, version int64, gen uint64) *clusterView {
	nv := &clusterView{version: version, myID: v.myID, idSet: v.idSet, gen: gen, nodes: pt.nodes}
	slots := *v.slots
	for s, nd := range pt.owner {
		slots[s] = nd
	}
	nv.slots = &slots
	nv.resolveMe()
	return nv
}

// clusterSize is the number of masters of the current topology with slots.
func (v *clusterView) clusterSize() int {
	n := 0
	for _, nd := range v.nodes {
		if nd.master && len(nd.spans) > 0 {
			n++
		}
	}
	return n
}

func (v *clusterView) knownNodes() int {
	ids := map[string]bool{}
	for _, nd := range v.nodes {
		ids[nd.id] = true
	}
	return len(ids)
}

// slotRun is a maximal run of consecutive slots pointing at one record.
type slotRun struct {
	start, end int
	owner      *viewNode
}

func (v *clusterView) slotRuns() []slotRun {
	var runs []slotRun
	for s, nd := range v.slots {
		if nd == nil {
			continue
		}
		if k := len(runs) - 1; k >= 0 && runs[k].owner == nd && runs[k].end == s-1 {
			runs[k].end = s
			continue
		}
		runs = append(runs, slotRun{s, s, nd})
	}
	return runs
}

// clusterInfo renders CLUSTER INFO; failoverState is "" on replicas.
func (v *clusterView) clusterInfo(failoverState string) string {
	assigned := 0
	for _, nd := range v.slots {
		if nd != nil {
			assigned++
		}
	}
	var b strings.Builder
	ver := strconv.FormatInt(v.version, 10)
	b.WriteString("cluster_state:ok\r\n")
	b.WriteString("cluster_slots_assigned:" + strconv.Itoa(assigned) + "\r\n")
	b.WriteString("cluster_slots_ok:" + strconv.Itoa(assigned) + "\r\n")
	b.WriteString("cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\n")
	b.WriteString("cluster_known_nodes:" + strconv.Itoa(v.knownNodes()) + "\r\n")
	b.WriteString("cluster_size:" + strconv.Itoa(v.clusterSize()) + "\r\n")
	b.WriteString("cluster_current_epoch:" + ver + "\r\n")
	b.WriteString("cluster_my_epoch:" + ver + "\r\n")
	if failoverState != "" {
		b.WriteString("cluster_failover_state:" + failoverState + "\r\n")
	}
	return b.String()
}

// clusterNodes renders CLUSTER NODES. Slots are listed per run of the slot
// table, so stale entries of older topologies show up under their node id and
// adjacent ranges are not merged across records.
func (v *clusterView) clusterNodes(nowMs int64) string {
	ranges := map[string][]string{}
	for _, r := range v.slotRuns() {
		txt := strconv.Itoa(r.start)
		if r.end != r.start {
			txt += "-" + strconv.Itoa(r.end)
		}
		ranges[r.owner.id] = append(ranges[r.owner.id], txt)
	}
	var b strings.Builder
	for _, nd := range v.nodes {
		b.WriteString(nd.id + " " + nd.addr + "@" + strconv.Itoa(nd.port+10000) + " ")
		if nd.id == v.myID {
			b.WriteString("myself,")
		}
		if nd.master {
			b.WriteString("master - ")
		} else {
			b.WriteString("slave " + nd.masterID + " ")
		}
		b.WriteString(strconv.FormatInt(nowMs-1, 10) + " " + strconv.FormatInt(nowMs, 10) + " " +
			strconv.FormatInt(v.version, 10) + " connected")
		if nd.master && len(ranges[nd.id]) > 0 {
			b.WriteString(" " + strings.Join(ranges[nd.id], " "))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// appendClusterSlots appends the CLUSTER SLOTS reply.
func (v *clusterView) appendClusterSlots(out []byte) []byte {
	runs := v.slotRuns()
	out = appendArrayHeader(out, len(runs))
	for _, r := range runs {
		out = appendArrayHeader(out, 3+len(r.owner.replicas))
		out = appendInteger(out, int64(r.start))
		out = appendInteger(out, int64(r.end))
		for _, nd := range append([]*viewNode{r.owner}, r.owner.replicas...) {
			out = appendArrayHeader(out, 3)
			out = appendBulkString(out, nd.host)
			out = appendInteger(out, int64(nd.port))
			out = appendBulkString(out, nd.id)
		}
	}
	return out
}
