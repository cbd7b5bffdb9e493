package proxy

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSubkeyScansOverKvsim: go-redis' HScan, SScan and ZScan iterators walk
// a big hash, set and sorted set fully through the proxy over kvsim, whose
// cursors are Kvrocks' (numbers up to 2^63, naming the last member), in
// RESP2 and RESP3, with and without MATCH.
func TestSubkeyScansOverKvsim(t *testing.T) {
	kp := startKvsimProxy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 3000
	setup := redis.NewClient(&redis.Options{Addr: kp.addr})
	t.Cleanup(func() { _ = setup.Close() })
	var fields []any
	var members []any
	var scored []redis.Z
	var want []string
	for i := 0; i < n; i++ {
		m := "m:" + strconv.Itoa(i)
		want = append(want, m)
		fields = append(fields, m, "v"+m)
		members = append(members, m)
		scored = append(scored, redis.Z{Score: float64(i), Member: m})
	}
	sort.Strings(want)
	require.NoError(t, setup.HSet(ctx, "big:h", fields...).Err())
	require.NoError(t, setup.SAdd(ctx, "big:s", members...).Err())
	require.NoError(t, setup.ZAdd(ctx, "big:z", scored...).Err())

	var wantMatch []string
	for _, m := range want {
		if len(m) >= 3 && m[:3] == "m:1" {
			wantMatch = append(wantMatch, m)
		}
	}
	for _, proto := range []int{2, 3} {
		client := redis.NewClient(&redis.Options{Addr: kp.addr, Protocol: proto})
		t.Cleanup(func() { _ = client.Close() })
		for _, match := range []string{"", "m:1*"} {
			expect := want
			if match != "" {
				expect = wantMatch
			}
			name := fmt.Sprintf("RESP%d MATCH %q", proto, match)

			got, values := iterate(t, ctx, client.HScan(ctx, "big:h", 0, match, 97).Iterator())
			assert.Equal(t, expect, got, "HSCAN "+name)
			for i, v := range values {
				require.Equal(t, "v"+got[i], v, "HSCAN's values follow their fields")
			}

			got = iterateMembers(t, ctx, client.SScan(ctx, "big:s", 0, match, 97).Iterator())
			assert.Equal(t, expect, got, "SSCAN "+name)

			got, values = iterate(t, ctx, client.ZScan(ctx, "big:z", 0, match, 97).Iterator())
			assert.Equal(t, expect, got, "ZSCAN "+name)
			for i, v := range values {
				require.Equal(t, got[i][2:], v, "ZSCAN's scores follow their members")
			}
		}
	}
}

// iterate collects an HSCAN or ZSCAN iteration's (member, value) pairs.
func iterate(t *testing.T, ctx context.Context, it *redis.ScanIterator) (members, values []string) {
	t.Helper()
	all := iterateMembers(t, ctx, it)
	for i := 0; i+1 < len(all); i += 2 {
		members = append(members, all[i])
		values = append(values, all[i+1])
	}
	return members, values
}

// iterateMembers collects every element an iteration returns, in order.
func iterateMembers(t *testing.T, ctx context.Context, it *redis.ScanIterator) []string {
	t.Helper()
	var all []string
	for it.Next(ctx) {
		all = append(all, it.Val())
	}
	require.NoError(t, it.Err())
	return all
}
