package cluster

import (
	"math"
	"strconv"
	"strings"
	"sync"
)

// SlotCount is the number of hash slots in a Redis Cluster.
const SlotCount = 16384

// SlotRange is an inclusive range of hash slots.
type SlotRange struct {
	Start, End int
}

// Slot returns the hash slot of key: CRC16 (XMODEM) of its hash tag, the
// part between the first "{" and the next "}" when that part is non-empty.
func Slot(key string) int {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if size := strings.IndexByte(key[open+1:], '}'); size > 0 {
			key = key[open+1 : open+1+size]
		}
	}
	return int(crc16(key)) % SlotCount
}

func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

var (
	slotTagsOnce sync.Once
	slotTags     [SlotCount]string
)

// KeyInSlot returns name prefixed with a hash tag that puts it in slot, so
// tests can aim a key at a chosen slot. It panics if slot is out of range.
func KeyInSlot(slot int, name string) string {
	if slot < 0 || slot >= SlotCount {
		panic("cluster: KeyInSlot: slot " + strconv.Itoa(slot) + " out of range")
	}
	// Small decimal tags reach every slot after about 170k tries (coupon
	// collector), so one pass fills the whole table.
	slotTagsOnce.Do(func() {
		for found, i := 0, 0; found < SlotCount; i++ {
			tag := strconv.Itoa(i)
			if s := int(crc16(tag)) % SlotCount; slotTags[s] == "" {
				slotTags[s] = tag
				found++
			}
		}
	})
	return "{" + slotTags[slot] + "}" + name
}

// splitSlots divides the slots among masters in contiguous ranges the way
// `redis-cli --cluster create` does, so a 3-master cluster gets the familiar
// 0-5460, 5461-10922, 10923-16383.
func splitSlots(masters int) []SlotRange {
	perNode := float64(SlotCount) / float64(masters)
	ranges := make([]SlotRange, 0, masters)
	first, cursor := 0, 0.0
	for i := range masters {
		last := int(math.Round(cursor + perNode - 1))
		if last > SlotCount-1 || i == masters-1 {
			last = SlotCount - 1
		}
		if last < first {
			last = first
		}
		ranges = append(ranges, SlotRange{first, last})
		first = last + 1
		cursor += perNode
	}
	return ranges
}
