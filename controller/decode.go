package controller

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// slotCount is the size of the hash-slot space.
const slotCount = 16384

// wireCluster is the part of upstream's store.Cluster JSON kvproxy reads.
type wireCluster struct {
	Data struct {
		Cluster *struct {
			Name    string `json:"name"`
			Version *int64 `json:"version"`
			Shards  []struct {
				Nodes []struct {
					ID   string `json:"id"`
					Addr string `json:"addr"`
					Role string `json:"role"`
				} `json:"nodes"`
				SlotRanges []wireSlotRange `json:"slot_ranges"`
			} `json:"shards"`
		} `json:"cluster"`
	} `json:"data"`
}

// wireSlotRange is a slot range as upstream marshals it, "0-5460" or "7";
// older controllers wrote {"start":0,"stop":5460}.
type wireSlotRange SlotRange

func (r *wireSlotRange) UnmarshalJSON(b []byte) error {
	var text string
	if err := json.Unmarshal(b, &text); err == nil {
		sr, err := parseSlotRange(text)
		*r = wireSlotRange(sr)
		return err
	}
	var obj struct {
		Start *int `json:"start"`
		Stop  *int `json:"stop"`
	}
	if err := json.Unmarshal(b, &obj); err != nil || obj.Start == nil || obj.Stop == nil {
		return fmt.Errorf("slot range %s is neither \"a-b\" nor {\"start\",\"stop\"}", truncate(b))
	}
	sr := SlotRange{*obj.Start, *obj.Stop}
	*r = wireSlotRange(sr)
	return checkSlotRange(sr)
}

func parseSlotRange(s string) (SlotRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		hi = lo
	}
	start, err1 := strconv.Atoi(lo)
	end, err2 := strconv.Atoi(hi)
	if err1 != nil || err2 != nil {
		return SlotRange{}, fmt.Errorf("slot range %q is not \"a-b\" or \"n\"", s)
	}
	sr := SlotRange{start, end}
	return sr, checkSlotRange(sr)
}

func checkSlotRange(r SlotRange) error {
	if r.Start < 0 || r.End >= slotCount || r.Start > r.End {
		return fmt.Errorf("slot range %d-%d is out of 0-%d or reversed", r.Start, r.End, slotCount-1)
	}
	return nil
}

// decodeCluster reads a GET cluster answer. Each shard must have exactly one
// master; every node an id and a host:port address.
func decodeCluster(body []byte) (*Cluster, error) {
	var w wireCluster
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, err
	}
	wc := w.Data.Cluster
	switch {
	case wc == nil:
		return nil, errors.New("no data.cluster")
	case wc.Version == nil:
		return nil, errors.New("no cluster version")
	}
	cl := &Cluster{Name: wc.Name, Version: *wc.Version, Shards: make([]Shard, len(wc.Shards))}
	for i, ws := range wc.Shards {
		s := &cl.Shards[i]
		masters := 0
		for _, wn := range ws.Nodes {
			n := Node{ID: wn.ID, Addr: wn.Addr}
			if n.ID == "" {
				return nil, fmt.Errorf("shard %d: a node without an id", i)
			}
			if host, port, err := net.SplitHostPort(n.Addr); err != nil || host == "" || port == "" {
				return nil, fmt.Errorf("shard %d: node %s: address %q is not host:port", i, n.ID, n.Addr)
			}
			switch wn.Role {
			case "master":
				masters++
				s.Master = n
			case "slave":
				s.Replicas = append(s.Replicas, n)
			default:
				return nil, fmt.Errorf("shard %d: node %s: role %q is neither master nor slave", i, n.ID, wn.Role)
			}
		}
		if masters != 1 {
			return nil, fmt.Errorf("shard %d has %d masters", i, masters)
		}
		for _, r := range ws.SlotRanges {
			s.Slots = append(s.Slots, SlotRange(r))
		}
	}
	return cl, nil
}

// truncate quotes b for an error, bounded.
func truncate(b []byte) string {
	const max = 64
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "..."
	}
	return strconv.Quote(string(b))
}
