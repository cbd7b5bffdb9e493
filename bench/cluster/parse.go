package cluster

import (
	"slices"
	"strings"

	"kvproxy/internal/resp"
)

// parseInfo reads the "key:value" fields of an INFO or CLUSTER INFO reply
// (as resp.InfoFields does), section headers aside; a later field wins.
func parseInfo(text string) map[string]string {
	fields := make(map[string]string)
	for key, value := range resp.InfoFields(text) {
		if key == "" || key[0] != '#' {
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

// parseClusterNodes reads a CLUSTER NODES reply (see resp.ClusterNodes).
// Lines with fewer fields are skipped.
func parseClusterNodes(text string) []nodeEntry {
	var entries []nodeEntry
	for line, err := range resp.ClusterNodes(text) {
		if err != nil {
			continue
		}
		master := line.MasterID
		if master == "-" {
			master = ""
		}
		entries = append(entries, nodeEntry{
			ID:        line.ID,
			Addr:      line.HostPort(),
			Flags:     strings.Split(line.Flags, ","),
			MasterID:  master,
			LinkState: line.LinkState,
		})
	}
	return entries
}
