package soak

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRotationVisitsEveryShardWithEveryKind(t *testing.T) {
	kinds := []FailoverKind{FailoverClusterx, FailoverPause}
	for _, shards := range []int{1, 2, 3, 4} {
		seen := map[int]map[FailoverKind]int{}
		for i := range 2 * shards * len(kinds) {
			shard, kind := rotation(i, shards, kinds)
			assert.Equal(t, i%shards, shard, "shards in turn")
			if seen[shard] == nil {
				seen[shard] = map[FailoverKind]int{}
			}
			seen[shard][kind]++
		}
		for shard := range shards {
			assert.Equal(t, map[FailoverKind]int{FailoverClusterx: 2, FailoverPause: 2}, seen[shard], "shards %d, shard %d", shards, shard)
		}
	}
	shard, kind := rotation(4, 3, []FailoverKind{FailoverPause})
	assert.Equal(t, 1, shard)
	assert.Equal(t, FailoverPause, kind)
}

func TestScheduleWithoutBetweenIsTheRotation(t *testing.T) {
	kinds := []FailoverKind{FailoverClusterx, FailoverController}
	for i := range 12 {
		shard, kind := rotation(i, 3, kinds)
		assert.Equal(t, step{Kind: kind, Shard: shard, Planned: i}, scheduleStep(i, 3, kinds, nil))
	}
}

// Issue 10's shape: planned failovers alternate CLUSTERX FAILOVER and the
// controller's API over every shard and back, and between two of them a
// failover of another shard or a push.
func TestScheduleInterleavesFailoversOfOtherShardsAndPushes(t *testing.T) {
	planned := []FailoverKind{FailoverClusterx, FailoverController}
	between := []FailoverKind{FailoverPause, FailoverPush}
	for _, shards := range []int{2, 3, 4} {
		plannedByShard := map[int]map[FailoverKind]int{}
		betweenByShard := map[int]int{}
		var last step
		pushes := 0
		for i := range 4 * shards * len(planned) {
			st := scheduleStep(i, shards, planned, between)
			if i%2 == 0 {
				assert.False(t, st.Between, "step %d", i)
				assert.Equal(t, i/2, st.Planned)
				shard, kind := rotation(i/2, shards, planned)
				assert.Equal(t, step{Kind: kind, Shard: shard, Planned: i / 2}, st)
				if plannedByShard[shard] == nil {
					plannedByShard[shard] = map[FailoverKind]int{}
				}
				plannedByShard[shard][kind]++
				if shards%2 == 1 && i > 0 {
					assert.NotEqual(t, last.Kind, st.Kind, "shards %d: planned failovers alternate kinds", shards)
				}
				last = st
				continue
			}
			assert.True(t, st.Between, "step %d", i)
			assert.Equal(t, last.Planned, st.Planned, "a between step follows its planned failover")
			assert.Equal(t, between[(i/2)%len(between)], st.Kind, "between kinds in turn")
			if st.Kind == FailoverPush {
				assert.Equal(t, -1, st.Shard)
				pushes++
				continue
			}
			assert.NotEqual(t, last.Shard, st.Shard, "shards %d step %d: another shard than the one just moved", shards, i)
			assert.True(t, st.Shard >= 0 && st.Shard < shards)
			betweenByShard[st.Shard]++
		}
		for shard := range shards {
			assert.Equal(t, map[FailoverKind]int{FailoverClusterx: 2, FailoverController: 2}, plannedByShard[shard],
				"shards %d: shard %d fails over with each kind, back and forth", shards, shard)
			// With 2 shards, a pause always follows a failover of shard 0.
			if shards > 2 {
				assert.Positive(t, betweenByShard[shard], "shards %d: shard %d fails over between too", shards, shard)
			}
		}
		assert.Equal(t, 2*shards, pushes)
	}
}
