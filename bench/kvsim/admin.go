package kvsim

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/redcon"
)

// adminHelp is the KVSIM HELP reply, one status line each, as Redis' HELP replies are.
var adminHelp = []string{
	"KVSIM <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
	"TOPOLOGY",
	"    The controller's topology: its version, then the CLUSTERX SETNODES text.",
	"TABLE",
	"    The node table: id, address, role, master id, slots, up or down.",
	"FAILOVER <shard|master-id> [FORCE]",
	"    Controller failover: CLIENT PAUSE WRITE on the master, wait for the replica,",
	"    push the swapped topology. FORCE: promote even if the replica lags.",
	"KILL <node-id>",
	"    Stop a node abruptly; it keeps its data and topology.",
	"RESTART <node-id>",
	"    Start a killed node again on its address.",
	"AUTOFAILOVER ON|OFF",
	"    Whether the controller promotes a replica after repeated failed probes of its master.",
	"HELP",
	"    Print this help.",
}

// adminCommand is one parsed KVSIM command.
type adminCommand struct {
	sub    string // upper case
	target string // shard index or node id
	force  bool   // FAILOVER ... FORCE
	on     bool   // AUTOFAILOVER ON
}

// adminError is a client-facing error: its text is the RESP error line.
type adminError string

func (e adminError) Error() string { return string(e) }

// parseAdmin parses args (args[0] is "KVSIM").
func parseAdmin(args [][]byte) (adminCommand, error) {
	if len(args) < 2 {
		return adminCommand{}, adminError("ERR wrong number of arguments for 'kvsim' command")
	}
	cmd := adminCommand{sub: strings.ToUpper(string(args[1]))}
	arity := func(min, max int) error {
		if n := len(args) - 2; n < min || n > max {
			return adminError(fmt.Sprintf("ERR wrong number of arguments for 'kvsim|%s' command", strings.ToLower(cmd.sub)))
		}
		return nil
	}
	switch cmd.sub {
	case "HELP", "TOPOLOGY", "TABLE":
		return cmd, arity(0, 0)
	case "KILL", "RESTART":
		if err := arity(1, 1); err != nil {
			return cmd, err
		}
		cmd.target = string(args[2])
	case "FAILOVER":
		if err := arity(1, 2); err != nil {
			return cmd, err
		}
		cmd.target = string(args[2])
		if len(args) == 4 {
			if !strings.EqualFold(string(args[3]), "FORCE") {
				return cmd, adminError("ERR syntax error")
			}
			cmd.force = true
		}
	case "AUTOFAILOVER":
		if err := arity(1, 1); err != nil {
			return cmd, err
		}
		switch strings.ToUpper(string(args[2])) {
		case "ON":
			cmd.on = true
		case "OFF":
		default:
			return cmd, adminError("ERR syntax error")
		}
	default:
		return cmd, adminError(fmt.Sprintf("ERR unknown subcommand '%s'. Try KVSIM HELP.", sanitize(string(args[1]))))
	}
	return cmd, nil
}

// adminHandler returns the NodeConfig.Admin function of node self.
func (c *Cluster) adminHandler(self string) func(args [][]byte) []byte {
	return func(args [][]byte) []byte {
		cmd, err := parseAdmin(args)
		if err != nil {
			return redcon.AppendError(nil, err.Error())
		}
		return c.execAdmin(self, cmd)
	}
}

// killSelfDelay: Node.Kill waits for every connection of the node, the one
// running this handler included, so a node told to kill itself does it in the
// background, a little later, to let +OK reach the client first.
const killSelfDelay = 50 * time.Millisecond

func (c *Cluster) execAdmin(self string, cmd adminCommand) []byte {
	switch cmd.sub {
	case "HELP":
		out := redcon.AppendArray(nil, len(adminHelp))
		for _, line := range adminHelp {
			out = redcon.AppendString(out, line)
		}
		return out
	case "TOPOLOGY":
		t := c.Topology()
		return redcon.AppendBulkString(nil, fmt.Sprintf("version %d\n%s\n", t.Version, t.Render()))
	case "TABLE":
		return redcon.AppendBulkString(nil, c.Table())
	case "AUTOFAILOVER":
		c.ctrl.SetAutoFailover(cmd.on)
		return redcon.AppendOK(nil)
	case "KILL":
		if c.byID[cmd.target] == nil {
			return redcon.AppendError(nil, "ERR Unknown node "+sanitize(cmd.target))
		}
		if cmd.target == self {
			c.tasks.Add(1)
			go func() {
				defer c.tasks.Done()
				select {
				case <-time.After(killSelfDelay):
					if err := c.ctrl.Kill(cmd.target); err != nil {
						c.log.Warn("KVSIM KILL failed", "err", err)
					}
				case <-c.closing:
				}
			}()
			return redcon.AppendOK(nil)
		}
		return c.adminResult(c.ctrl.Kill(cmd.target))
	case "RESTART":
		if c.byID[cmd.target] == nil {
			return redcon.AppendError(nil, "ERR Unknown node "+sanitize(cmd.target))
		}
		return c.adminResult(c.ctrl.Restart(cmd.target))
	default: // FAILOVER: parseAdmin admits nothing else
		shard, err := c.shardOf(cmd.target)
		if err != nil {
			return redcon.AppendError(nil, err.Error())
		}
		opts := c.ctrl.cfg.Failover
		opts.Force = cmd.force
		ctx, cancel := context.WithTimeout(context.Background(), 2*c.ctrl.cfg.CommandTimeout+opts.PauseTimeout)
		defer cancel()
		return c.adminResult(c.ctrl.FailoverShard(ctx, shard, opts))
	}
}

// shardOf resolves a FAILOVER target: a shard index or the id of a current master.
func (c *Cluster) shardOf(target string) (int, error) {
	t := c.Topology()
	if n, err := strconv.Atoi(target); err == nil {
		if n < 0 || n >= len(t.Shards) {
			return 0, adminError(fmt.Sprintf("ERR No shard %d: the cluster has %d", n, len(t.Shards)))
		}
		return n, nil
	}
	shard, master := t.ShardOfNode(target)
	switch {
	case shard < 0:
		return 0, adminError("ERR Unknown node " + sanitize(target))
	case !master:
		return 0, adminError("ERR Node " + sanitize(target) + " is not a master")
	}
	return shard, nil
}

// adminResult is +OK, or the error as one RESP error line.
func (c *Cluster) adminResult(err error) []byte {
	if err == nil {
		return redcon.AppendOK(nil)
	}
	c.log.Warn("KVSIM command failed", "err", err)
	return redcon.AppendError(nil, "ERR "+sanitize(err.Error()))
}

// sanitize keeps a client-supplied or joined error text on one RESP line.
func sanitize(s string) string {
	return strings.NewReplacer("\r", " ", "\n", "; ").Replace(s)
}
