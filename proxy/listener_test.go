package proxy

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"kvproxy/internal/tlstest"
)

// A client that connects to the TLS listener and never handshakes holds
// neither the accept loop nor Close: plain clients are accepted meanwhile,
// and Close ends the pending handshake at once.
func TestListenerSilentTLSClientBlocksNothing(t *testing.T) {
	ln, plain, secure := newTLSListener(t, tlstest.New(t, "kvproxy test"), false)
	assert.Equal(t, plain.Addr(), ln.Addr())
	assert.Equal(t, secure.Addr(), ln.TLSAddr())

	silent, err := net.Dial("tcp", secure.Addr().String())
	require.NoError(t, err)
	defer silent.Close()
	dialed, err := net.Dial("tcp", plain.Addr().String())
	require.NoError(t, err)
	defer dialed.Close()
	accepted, err := ln.Accept()
	require.NoError(t, err)
	assert.Equal(t, dialed.LocalAddr().String(), accepted.RemoteAddr().String(), "the plain client, not the silent TLS one")
	require.NoError(t, accepted.Close())

	closed := make(chan error, 1)
	go func() { closed <- ln.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(TLSHandshakeTimeout / 2):
		t.Fatal("Close waited for the silent client's handshake")
	}
	require.NoError(t, silent.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = silent.Read(make([]byte, 1))
	assert.Error(t, err, "the pending handshake's connection was closed")
	_, err = ln.Accept()
	assert.ErrorIs(t, err, net.ErrClosed)
}

func TestNewListenerNeedsAListener(t *testing.T) {
	_, err := NewListener(nil, nil, nil, nil)
	assert.Error(t, err)
	secure, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer secure.Close()
	_, err = NewListener(nil, secure, nil, nil)
	assert.ErrorContains(t, err, "tls.Config")
}
