package failover

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPhasePredicates(t *testing.T) {
	cases := []struct {
		phase       Phase
		holds, last bool
	}{
		{PhaseNone, false, false},
		{PhaseStarted, false, false},
		{PhaseCheckSlave, false, false},
		{PhasePauseWrite, true, false},
		{PhaseWaitSync, true, false},
		{PhaseSwitching, true, false},
		{PhaseSuccess, false, true},
		{PhaseFailed, false, true},
		{"", false, false},
		{"PAUSE_WRITE", false, false},
	}
	for _, c := range cases {
		assert.Equal(t, c.holds, c.phase.HoldsWrites(), "%q.HoldsWrites()", c.phase)
		assert.Equal(t, c.last, c.phase.Final(), "%q.Final()", c.phase)
	}
}

// kvrocksInfo is a master's CLUSTER INFO body with the given failover state.
func kvrocksInfo(state string) string {
	return "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n" +
		"cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:6\r\ncluster_size:3\r\n" +
		"cluster_current_epoch:1\r\ncluster_my_epoch:1\r\ncluster_failover_state:" + state + "\r\n"
}

func TestParsePhaseEveryState(t *testing.T) {
	for _, want := range phases {
		got, err := ParsePhase([]byte(kvrocksInfo(string(want))))
		require.NoError(t, err, want)
		assert.Equal(t, want, got)
	}
}

func TestParsePhase(t *testing.T) {
	cases := []struct {
		name string
		info string
		want Phase
		err  error
	}{
		{"only line", "cluster_failover_state:wait_sync\r\n", PhaseWaitSync, nil},
		{"no final line end", "cluster_state:ok\r\ncluster_failover_state:switching", PhaseSwitching, nil},
		{"bare LF", "cluster_state:ok\ncluster_failover_state:success\n", PhaseSuccess, nil},
		{"before migration lines", "cluster_failover_state:failed\r\nmigrating_slot: 5\r\nmigrating_state: success\r\n", PhaseFailed, nil},
		{"first line wins", "cluster_failover_state:started\r\ncluster_failover_state:nonsense\r\n", PhaseStarted, nil},
		{"replica has none", "cluster_state:ok\r\ncluster_my_epoch:1\r\n", "", ErrNoFailoverState},
		{"empty", "", "", ErrNoFailoverState},
		{"key not at line start", "xcluster_failover_state:success\r\n", "", ErrNoFailoverState},
		{"unknown", kvrocksInfo("paused"), "", ErrUnknownPhase},
		{"empty value", kvrocksInfo(""), "", ErrUnknownPhase},
		{"upper case", kvrocksInfo("SUCCESS"), "", ErrUnknownPhase},
		{"trailing space", kvrocksInfo("success "), "", ErrUnknownPhase},
		{"two CRs", "cluster_failover_state:success\r\r\n", "", ErrUnknownPhase},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParsePhase([]byte(c.info))
			if c.err != nil {
				assert.ErrorIs(t, err, c.err)
				assert.Empty(t, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.want, got)
		})
	}
}

func FuzzParsePhase(f *testing.F) {
	for _, p := range phases {
		f.Add([]byte(kvrocksInfo(string(p))))
	}
	f.Add([]byte("cluster_failover_state:\r\n"))
	f.Add([]byte("cluster_failover_state:success"))
	f.Add([]byte("cluster_failover_state:pause_write\n\r\n"))
	f.Add([]byte("cluster_state:ok\r\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, info []byte) {
		got, err := ParsePhase(info)
		if err != nil {
			assert.Empty(t, got)
			return
		}
		assert.Contains(t, phases, got, "a parsed phase is one of the spec's")
		assert.True(t, bytes.Contains(info, []byte("cluster_failover_state:"+string(got))), "the phase comes from the input")
		// The first failover line decides, whatever follows it.
		again, err := ParsePhase(append(append([]byte(nil), info...), "\ncluster_failover_state:bogus\r\n"...))
		require.NoError(t, err)
		assert.Equal(t, got, again)
	})
}
