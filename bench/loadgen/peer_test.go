package loadgen

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParsePeerProxy(t *testing.T) {
	p, err := ParsePeerProxy("other=/opt/other/bin/proxy: --listen {addr}  --seeds {seeds} ")
	require.NoError(t, err)
	assert.Equal(t, PeerProxy{Name: "other", Binary: "/opt/other/bin/proxy",
		Args: []string{"--listen", "{addr}", "--seeds", "{seeds}"}}, p)

	for name, spec := range map[string]string{
		"no name":          "/bin/proxy:{port}",
		"empty name":       "=/bin/proxy:{port}",
		"upper case name":  "Other=/bin/proxy:{port}",
		"built-in name":    "twemproxy=/bin/proxy:{port}",
		"no binary":        "other=:{port}",
		"no port":          "other=/bin/proxy:--seeds {seeds}",
		"no args":          "other=/bin/proxy",
		"name with spaces": "my proxy=/bin/proxy:{port}",
	} {
		_, err := ParsePeerProxy(spec)
		assert.Error(t, err, name)
	}
	assert.ErrorContains(t, validatePeers([]PeerProxy{p, p}), "named twice")
}

func TestExpandPeerArgs(t *testing.T) {
	got := expandPeerArgs([]string{"-p", "{port}", "--listen={addr}", "{seeds}", "{seed}", "{host}:{seedport}", "{dir}/conf"},
		7001, []string{"10.0.0.1:6379", "10.0.0.2:6380"}, "/tmp/d")
	assert.Equal(t, []string{"-p", "7001", "--listen=127.0.0.1:7001", "10.0.0.1:6379,10.0.0.2:6380", "10.0.0.1:6379",
		"10.0.0.1:6379", "/tmp/d/conf"}, got)
}

func TestLaunchPeerProxy(t *testing.T) {
	// A redis-server on the given port stands in for a proxy: the launcher
	// only needs it to answer PING where it was told to listen.
	bin := RequireBinary(t, "redis-server")
	server := StartRedis(t, RedisOptions{})
	peer, err := LaunchPeerProxy(testContext(t), PeerProxy{Name: "stand-in", Binary: bin,
		Args: []string{"--port", "{port}", "--bind", "127.0.0.1", "--save", "", "--dir", "{dir}"}},
		[]string{server.Addr()})
	require.NoError(t, err)
	defer peer.Close()
	require.NoError(t, ping(testContext(t), peer.Addr(), ""))

	_, err = LaunchPeerProxy(testContext(t), PeerProxy{Name: "fails", Binary: "false", Args: []string{"{port}"}},
		[]string{server.Addr()})
	assert.ErrorContains(t, err, "peer fails")
}
