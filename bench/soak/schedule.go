package soak

// The schedule of a soak is a sequence of steps, each run to its end before
// the next starts, one every Config.FailoverInterval.
//
// Without Config.Between, every step is a planned failover: failover p
// moves shard p mod shards (shards in turn, so each fails over and, the next
// time round, back), and each shard's visits take Config.FailoverKinds in
// turn, so every shard sees every kind (rotation).
//
// With Config.Between, planned failovers and steps between them alternate,
// as issue 10's acceptance asks (failovers through the proxy with
// controller-initiated failovers of other shards and unrelated topology
// pushes in between): step 2p is planned failover p, step 2p+1 the between
// step p, which takes the Between kinds in turn; when it is a failover it
// moves a shard other than the one planned failover p just moved, the next
// other shard at each round of the Between kinds. A push moves no shard.
// With 3 shards, FailoverKinds clusterx,controller and Between pause,push:
//
//	clusterx 0, pause 1, controller 1, push, clusterx 2, pause 1, controller 0, push,
//	clusterx 1, pause 2, controller 2, push, clusterx 0, pause 2, controller 1, push, ...
//
// so the planned failovers alternate CLUSTERX FAILOVER through the proxy
// and the controller's API whenever the shard count is odd.
type step struct {
	Kind    FailoverKind
	Shard   int  // -1 for a push
	Between bool // a step between two planned failovers
	Planned int  // the planned failover this step is, or the one it follows
}

// scheduleStep returns step i of the schedule for shards shards.
func scheduleStep(i, shards int, planned, between []FailoverKind) step {
	if len(between) == 0 {
		shard, kind := rotation(i, shards, planned)
		return step{Kind: kind, Shard: shard, Planned: i}
	}
	p := i / 2
	if i%2 == 0 {
		shard, kind := rotation(p, shards, planned)
		return step{Kind: kind, Shard: shard, Planned: p}
	}
	s := step{Kind: between[p%len(between)], Shard: -1, Between: true, Planned: p}
	if s.Kind != FailoverPush {
		moved, _ := rotation(p, shards, planned)
		other := (p / len(between)) % (shards - 1)
		s.Shard = (moved + 1 + other) % shards
	}
	return s
}

// rotation returns the shard and kind of planned failover p: shards in
// turn, so every shard fails over and, the next time round, back; each
// shard's visits take the kinds in turn, so every shard sees every kind.
func rotation(p, shards int, kinds []FailoverKind) (int, FailoverKind) {
	shard, visit := p%shards, p/shards
	return shard, kinds[(visit+shard)%len(kinds)]
}
