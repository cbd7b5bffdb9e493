package resp

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestInfoField(t *testing.T) {
	const info = "# Cluster\r\ncluster_state:ok\r\ncluster_current_epoch:7\r\ncluster_current_epoch:8\r\n" +
		"odd:a:b\r\ntwo_crs:x\r\r\nbare_lf:y\nlast:z"
	for key, want := range map[string]string{
		"cluster_state":         "ok",
		"cluster_current_epoch": "7", // the first field wins
		"odd":                   "a:b",
		"two_crs":               "x\r", // only one CR belongs to the line end
		"bare_lf":               "y",
		"last":                  "z",
	} {
		got, ok := InfoField(info, key)
		assert.True(t, ok, key)
		assert.Equal(t, want, got, key)
		gotBytes, ok := InfoField([]byte(info), key)
		assert.True(t, ok, key)
		assert.Equal(t, want, string(gotBytes), key)
	}
	for _, key := range []string{"# Cluster", "cluster", "odd:a", "", "missing"} {
		_, ok := InfoField(info, key)
		assert.False(t, ok, key)
	}
	var keys []string
	for key := range InfoFields(info) {
		keys = append(keys, key)
	}
	assert.Equal(t, []string{"cluster_state", "cluster_current_epoch", "cluster_current_epoch", "odd", "two_crs", "bare_lf", "last"}, keys)
}

func TestInfoFieldDoesNotAllocate(t *testing.T) {
	info := []byte("cluster_state:ok\r\ncluster_failover_state:pause_write\r\n")
	allocs := testing.AllocsPerRun(100, func() {
		if v, ok := InfoField(info, "cluster_failover_state"); !ok || len(v) != len("pause_write") {
			t.Fatal("field not found")
		}
	})
	assert.Zero(t, allocs)
}

// naiveInfoFields is the rule of info.go written the obvious way.
func naiveInfoFields(text string) (keys, values []string) {
	if text == "" {
		return nil, nil
	}
	lines := strings.Split(text, "\n")
	if strings.HasSuffix(text, "\n") {
		lines = lines[:len(lines)-1]
	}
	for _, line := range lines {
		if key, value, ok := strings.Cut(strings.TrimSuffix(line, "\r"), ":"); ok {
			keys, values = append(keys, key), append(values, value)
		}
	}
	return keys, values
}

// FuzzInfoField: InfoFields and InfoField, on strings and on bytes, agree
// with a naive reading of the same rule; a field added on a line of its own
// is found unless an earlier field has its key.
func FuzzInfoField(f *testing.F) {
	f.Add("# Replication\r\nrole:master\r\nconnected_slaves:1\r\n", "role", "x")
	f.Add("a:b\r\r\n::\n\n#:\nlast:1", "", "v")
	f.Add("k:1\nk:2", "k", "3\r")
	f.Fuzz(func(t *testing.T, text, key, value string) {
		wantKeys, wantValues := naiveInfoFields(text)
		var keys, values []string
		for k, v := range InfoFields(text) {
			keys, values = append(keys, k), append(values, v)
		}
		require.Equal(t, wantKeys, keys)
		require.Equal(t, wantValues, values)
		var byteKeys []string
		for k := range InfoFields([]byte(text)) {
			byteKeys = append(byteKeys, string(k))
		}
		require.Equal(t, wantKeys, byteKeys)

		got, ok := InfoField(text, key)
		gotBytes, okBytes := InfoField([]byte(text), key)
		require.Equal(t, ok, okBytes)
		require.Equal(t, got, string(gotBytes))
		i := 0
		for i < len(wantKeys) && wantKeys[i] != key {
			i++
		}
		if i < len(wantKeys) {
			require.True(t, ok, "%q in %q", key, text)
			require.Equal(t, wantValues[i], got)
		} else {
			require.False(t, ok, "%q in %q", key, text)
		}

		if strings.ContainsAny(key, ":\n") || strings.Contains(value, "\n") {
			return
		}
		added, ok := InfoField(text+"\r\n"+key+":"+value+"\r\n", key)
		require.True(t, ok)
		if i == len(wantKeys) {
			require.Equal(t, value, added)
		}
	})
}
