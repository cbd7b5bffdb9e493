package router

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/bench/loadgen"
)

// crc16Reference computes CRC16-XMODEM bit by bit, independently of the table.
func crc16Reference(data []byte) uint16 {
	var crc uint16
	for _, b := range data {
		crc ^= uint16(b) << 8
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

func TestCRC16ClusterSpecVector(t *testing.T) {
	assert.Equal(t, uint16(0x31C3), crc16([]byte("123456789")))
	assert.Equal(t, uint16(0x31C3), crc16Reference([]byte("123456789")))
}

func TestSlotSpecVectors(t *testing.T) {
	tests := []struct {
		key    string
		hashed string // the bytes that must decide the slot
	}{
		{key: "foo", hashed: "foo"},
		{key: "", hashed: ""},
		{key: "{user1000}.following", hashed: "user1000"},
		{key: "{user1000}.followers", hashed: "user1000"},
		{key: "foo{}{bar}", hashed: "foo{}{bar}"},
		{key: "foo{{bar}}zap", hashed: "{bar"},
		{key: "foo{bar}{zap}", hashed: "bar"},
		{key: "{", hashed: "{"},
		{key: "}{", hashed: "}{"},
		{key: "a{b", hashed: "a{b"},
		{key: "{}", hashed: "{}"},
		{key: "{a}", hashed: "a"},
		{key: "x{}y}", hashed: "x{}y}"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			assert.Equal(t, crc16Reference([]byte(tt.hashed))%SlotCount, Slot([]byte(tt.key)))
		})
	}
	assert.Equal(t, uint16(12182), Slot([]byte("foo")))
	assert.Equal(t, Slot([]byte("{user1000}.following")), Slot([]byte("{user1000}.followers")))
	assert.Equal(t, uint16(0x31C3%SlotCount), Slot([]byte("123456789")))
	assert.Equal(t, uint16(0x31C3%SlotCount), Slot([]byte("abc{123456789}def")))
}

func TestSlotDoesNotAllocate(t *testing.T) {
	key := []byte("user:{12345}:profile")
	allocs := testing.AllocsPerRun(100, func() { _ = Slot(key) })
	assert.Zero(t, allocs)
}

func FuzzSlot(f *testing.F) {
	for _, seed := range []string{"", "foo", "{user1000}.following", "foo{}{bar}", "foo{{bar}}zap", "foo{bar}{zap}", "{", "}"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, key []byte) {
		require.Equal(t, crc16Reference(key), crc16(key))
		slot := Slot(key)
		require.Less(t, slot, uint16(SlotCount))
		require.Equal(t, crc16Reference(referenceHashTag(key))%SlotCount, slot)
	})
}

// referenceHashTag is a second, string-based reading of the hash-tag rule.
func referenceHashTag(key []byte) []byte {
	s := string(key)
	open := -1
	for i := 0; i < len(s); i++ {
		if s[i] == '{' {
			open = i
			break
		}
	}
	if open < 0 {
		return key
	}
	for i := open + 1; i < len(s); i++ {
		if s[i] == '}' {
			if i-open-1 == 0 {
				return key
			}
			return []byte(s[open+1 : i])
		}
	}
	return key
}

func BenchmarkSlot(b *testing.B) {
	for _, key := range []string{"user:{12345}:profile", "key:000000012345"} {
		b.Run(key, func(b *testing.B) {
			key := []byte(key)
			b.ReportAllocs()
			for b.Loop() {
				_ = Slot(key)
			}
		})
	}
}

func TestSlotMatchesRedisClusterKeyslot(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs without -short")
	}
	// CLUSTER KEYSLOT needs cluster mode.
	server := loadgen.StartRedis(t, loadgen.RedisOptions{Cluster: true})
	client := redis.NewClient(&redis.Options{Addr: server.Addr(), Protocol: 2, MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ab{}{}xyz\x00\xff"
	keys := make([]string, 3000)
	for i := range keys {
		key := make([]byte, rng.IntN(24))
		for j := range key {
			if rng.IntN(2) == 0 {
				key[j] = alphabet[rng.IntN(len(alphabet))]
			} else {
				key[j] = byte(rng.IntN(256))
			}
		}
		keys[i] = string(key)
	}
	cmds := make([]*redis.IntCmd, len(keys))
	_, err := client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, key := range keys {
			cmds[i] = pipe.ClusterKeySlot(ctx, key)
		}
		return nil
	})
	require.NoError(t, err)
	for i, key := range keys {
		require.Equal(t, cmds[i].Val(), int64(Slot([]byte(key))), "key %q", key)
	}
}
