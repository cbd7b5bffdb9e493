package kvsim

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/redcon"
)

func words(s string) [][]byte {
	var args [][]byte
	for _, w := range strings.Fields(s) {
		args = append(args, []byte(w))
	}
	return args
}

func TestParseAdmin(t *testing.T) {
	id := strings.Repeat("a", 40)
	for line, want := range map[string]adminCommand{
		"KVSIM HELP":                      {sub: "HELP"},
		"kvsim topology":                  {sub: "TOPOLOGY"},
		"KVSIM TABLE":                     {sub: "TABLE"},
		"KVSIM FAILOVER 1":                {sub: "FAILOVER", target: "1"},
		"KVSIM failover " + id + " force": {sub: "FAILOVER", target: id, force: true},
		"KVSIM KILL " + id:                {sub: "KILL", target: id},
		"KVSIM RESTART " + id:             {sub: "RESTART", target: id},
		"KVSIM AUTOFAILOVER on":           {sub: "AUTOFAILOVER", on: true},
		"KVSIM AUTOFAILOVER OFF":          {sub: "AUTOFAILOVER"},
	} {
		got, err := parseAdmin(words(line))
		require.NoError(t, err, line)
		assert.Equal(t, want, got, line)
	}
	for line, want := range map[string]string{
		"KVSIM":                      "ERR wrong number of arguments for 'kvsim' command",
		"KVSIM NOPE":                 "ERR unknown subcommand 'NOPE'. Try KVSIM HELP.",
		"KVSIM HELP me":              "ERR wrong number of arguments for 'kvsim|help' command",
		"KVSIM TOPOLOGY 1":           "ERR wrong number of arguments for 'kvsim|topology' command",
		"KVSIM FAILOVER":             "ERR wrong number of arguments for 'kvsim|failover' command",
		"KVSIM FAILOVER 0 FORCE now": "ERR wrong number of arguments for 'kvsim|failover' command",
		"KVSIM FAILOVER 0 QUICKLY":   "ERR syntax error",
		"KVSIM KILL":                 "ERR wrong number of arguments for 'kvsim|kill' command",
		"KVSIM RESTART a b":          "ERR wrong number of arguments for 'kvsim|restart' command",
		"KVSIM AUTOFAILOVER":         "ERR wrong number of arguments for 'kvsim|autofailover' command",
		"KVSIM AUTOFAILOVER maybe":   "ERR syntax error",
	} {
		_, err := parseAdmin(words(line))
		assert.EqualError(t, err, want, line)
	}
	_, err := parseAdmin([][]byte{[]byte("KVSIM"), []byte("x\r\ny")})
	assert.EqualError(t, err, "ERR unknown subcommand 'x ; y'. Try KVSIM HELP.", "a reply stays on one line")
}

func TestAdminHelpIsAStatusArray(t *testing.T) {
	c := &Cluster{}
	reply := string(c.adminHandler("self")(words("KVSIM HELP")))
	require.True(t, strings.HasPrefix(reply, "*16\r\n+KVSIM <subcommand>"), reply)
	assert.Equal(t, 16, strings.Count(reply, "\r\n+"))
	assert.Equal(t, "-ERR syntax error\r\n", string(c.adminHandler("self")(words("KVSIM AUTOFAILOVER x"))))
}

// TestAdminCommandsOverTheWire sends KVSIM commands to the nodes, as a shell
// user would with redis-cli.
func TestAdminCommandsOverTheWire(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	cfg := testClusterConfig(t)
	cfg.Password = "secret"
	cfg.Controller.Failover = slowSyncOptions()
	c := startTestCluster(t, cfg)
	ctx := testContext(t)
	nodes := c.Nodes()
	cl := dial(t, nodes[3], "secret")

	help, err := cl.Do(ctx, "KVSIM", "HELP").StringSlice()
	require.NoError(t, err)
	assert.Equal(t, adminHelp, help)
	topo, err := cl.Do(ctx, "kvsim", "topology").Text()
	require.NoError(t, err)
	assert.Equal(t, "version 1\n"+c.Topology().Render()+"\n", topo)
	table, err := cl.Do(ctx, "KVSIM", "TABLE").Text()
	require.NoError(t, err)
	assert.Equal(t, c.Table(), table)

	err = cl.Do(ctx, "KVSIM", "FAILOVER", nodes[1].ID()).Err()
	assert.EqualError(t, err, "ERR Node "+nodes[1].ID()+" is not a master")
	err = cl.Do(ctx, "KVSIM", "FAILOVER", "7").Err()
	assert.EqualError(t, err, "ERR No shard 7: the cluster has 2")
	err = cl.Do(ctx, "KVSIM", "FAILOVER", strings.Repeat("9", 40)).Err()
	assert.EqualError(t, err, "ERR Unknown node "+strings.Repeat("9", 40))
	require.NoError(t, cl.Do(ctx, "KVSIM", "FAILOVER", nodes[2].ID()).Err())
	assert.Same(t, nodes[3], c.Masters()[1])
	require.NoError(t, cl.Do(ctx, "KVSIM", "FAILOVER", "1", "FORCE").Err())
	assert.Same(t, nodes[2], c.Masters()[1])
	assert.Equal(t, int64(3), c.Topology().Version)

	require.NoError(t, cl.Do(ctx, "KVSIM", "AUTOFAILOVER", "OFF").Err())
	assert.False(t, c.Controller().AutoFailover())
	require.NoError(t, cl.Do(ctx, "KVSIM", "AUTOFAILOVER", "ON").Err())
	assert.True(t, c.Controller().AutoFailover())

	require.NoError(t, cl.Do(ctx, "KVSIM", "KILL", nodes[0].ID()).Err())
	assert.True(t, c.Controller().IsDown(nodes[0].ID()))
	err = cl.Do(ctx, "KVSIM", "KILL", nodes[0].ID()).Err()
	assert.ErrorContains(t, err, "ERR node is down")
	require.NoError(t, cl.Do(ctx, "KVSIM", "RESTART", nodes[0].ID()).Err())
	assert.False(t, c.Controller().IsDown(nodes[0].ID()))
	err = cl.Do(ctx, "KVSIM", "RESTART", nodes[0].ID()).Err()
	assert.ErrorContains(t, err, "ERR node is running")
	err = cl.Do(ctx, "KVSIM", "KILL", strings.Repeat("9", 40)).Err()
	assert.EqualError(t, err, "ERR Unknown node "+strings.Repeat("9", 40))

	// A node can be told to kill itself.
	_ = cl.Do(ctx, "KVSIM", "KILL", nodes[3].ID()).Err()
	require.Eventually(t, func() bool { return c.Controller().IsDown(nodes[3].ID()) },
		10*time.Second, 10*time.Millisecond)
}

// FuzzParseAdmin parses arbitrary KVSIM arguments (NUL-separated): a
// refusal is one RESP error line, an accepted command is one of KVSIM
// HELP's with the arguments it was given.
func FuzzParseAdmin(f *testing.F) {
	for _, line := range []string{"HELP", "topology", "FAILOVER 1", "failover " + strings.Repeat("a", 40) + " force",
		"KILL x", "RESTART", "AUTOFAILOVER on", "AUTOFAILOVER maybe", "x\r\ny", "FAILOVER 0 QUICKLY", ""} {
		f.Add(strings.ReplaceAll(line, " ", "\x00"))
	}
	f.Fuzz(func(t *testing.T, joined string) {
		args := [][]byte{[]byte("KVSIM")}
		if joined != "" {
			for a := range strings.SplitSeq(joined, "\x00") {
				args = append(args, []byte(a))
			}
		}
		cmd, err := parseAdmin(args)
		if err != nil {
			reply := redcon.AppendError(nil, err.Error())
			n, _ := redcon.ReadNextRESP(reply)
			require.Equal(t, len(reply), n, "one frame: %q", reply)
			require.True(t, strings.HasPrefix(err.Error(), "ERR "), err.Error())
			require.NotContains(t, err.Error(), "\n")
			require.NotContains(t, err.Error(), "\r")
			return
		}
		require.Contains(t, []string{"HELP", "TOPOLOGY", "TABLE", "KILL", "RESTART", "FAILOVER", "AUTOFAILOVER"}, cmd.sub)
		require.True(t, strings.EqualFold(cmd.sub, string(args[1])))
		if len(args) > 2 && cmd.sub != "AUTOFAILOVER" {
			require.Equal(t, string(args[2]), cmd.target)
		}
		require.Equal(t, cmd.force, len(args) == 4 && cmd.sub == "FAILOVER")
	})
}
