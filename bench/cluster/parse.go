package cluster

import (
	"slices"
	"strings"
)

// parseInfo reads the "key:value" lines of an INFO or CLUSTER INFO reply.
func parseInfo(text string) map[string]string {
	fields := make(map[string]string)
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" || line[0] == '#' {
			continue
		}
		if key, value, ok := strings.Cut(line, ":"); ok {
			fields[key] = value
		}
	}
	return fields
}

// nodeEntry is one line of CLUSTER NODES.
type nodeEntry struct {
	ID        string
	Addr      string // host:port, without the bus port or hostname
	Flags     []string
	MasterID  string // empty for a master
	LinkState string
}

func (e nodeEntry) has(flag string) bool { return slices.Contains(e.Flags, flag) }

// parseClusterNodes reads a CLUSTER NODES reply:
//
//	<id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot>...
//
// Lines with fewer fields are skipped.
func parseClusterNodes(text string) []nodeEntry {
	var entries []nodeEntry
	for line := range strings.Lines(text) {
		fields := strings.Fields(line)
		if len(fields) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(fields[1], "@")
		addr, _, _ = strings.Cut(addr, ",")
		master := fields[3]
		if master == "-" {
			master = ""
		}
		entries = append(entries, nodeEntry{
			ID:        fields[0],
			Addr:      addr,
			Flags:     strings.Split(fields[2], ","),
			MasterID:  master,
			LinkState: fields[7],
		})
	}
	return entries
}
