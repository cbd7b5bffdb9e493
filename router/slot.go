// Package router owns the backend side of the proxy: slot hashing, the slot
// table, backend connections and the handling of MOVED/ASK/TRYAGAIN replies.
package router

import "kvproxy/internal/resp"

// SlotCount is the number of hash slots in a Redis or Kvrocks cluster.
const SlotCount = resp.ClusterSlots

// crc16Table is the byte-wise lookup table of CRC16-XMODEM (polynomial 0x1021,
// initial value 0, no reflection), the checksum Redis Cluster uses for slots.
var crc16Table = func() (table [256]uint16) {
	for b := range table {
		crc := uint16(b) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		table[b] = crc
	}
	return table
}()

func crc16(data []byte) uint16 {
	var crc uint16
	for _, b := range data {
		crc = crc<<8 ^ crc16Table[byte(crc>>8)^b]
	}
	return crc
}

// Slot returns the cluster hash slot of key. When the key holds a hash tag (a
// '{' followed later by a '}' with at least one byte between them, taking the
// first '{' and the first '}' after it) only the tag is hashed, so related keys
// can be placed in the same slot.
func Slot(key []byte) uint16 {
	return crc16(hashTag(key)) & (SlotCount - 1)
}

// hashTag returns the part of key that decides its slot.
func hashTag(key []byte) []byte {
	for open, c := range key {
		if c != '{' {
			continue
		}
		for end := open + 1; end < len(key); end++ {
			if key[end] == '}' {
				if end == open+1 {
					return key // "{}": an empty tag hashes the whole key
				}
				return key[open+1 : end]
			}
		}
		return key // no '}' after the first '{'
	}
	return key
}
