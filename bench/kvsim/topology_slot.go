package kvsim

// numSlots is the size of the cluster's hash slot space.
const numSlots = 16384

// crc16Table is CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with.
var crc16Table = func() (t [256]uint16) {
	for i := range t {
		crc := uint16(i) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[i] = crc
	}
	return t
}()

func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc = crc<<8 ^ crc16Table[byte(crc>>8)^c]
	}
	return crc
}

// hashSlot is the cluster slot of key: CRC16 of the first non-empty {hash tag}
// if there is one, of the whole key otherwise. It does not allocate.
func hashSlot(key []byte) int {
	for i, c := range key {
		if c != '{' {
			continue
		}
		for j := i + 1; j < len(key); j++ {
			if key[j] == '}' {
				if j > i+1 {
					key = key[i+1 : j]
				}
				return int(crc16(key) & (numSlots - 1))
			}
		}
		break
	}
	return int(crc16(key) & (numSlots - 1))
}
