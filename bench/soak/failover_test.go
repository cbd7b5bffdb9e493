package soak

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestIsReplicaReadsTheMyselfLine(t *testing.T) {
	const master = "a1 127.0.0.1:1@10001 myself,master - 0 0 1 connected 0-16383\n" +
		"b2 127.0.0.1:2@10002 slave a1 0 0 1 connected\n"
	const replica = "a1 127.0.0.1:1@10001 master - 0 0 2 connected 0-16383\n" +
		"b2 127.0.0.1:2@10002 myself,slave a1 0 0 2 connected\n"
	assert.False(t, isReplica(master))
	assert.True(t, isReplica(replica))
	assert.False(t, isReplica(""))
}
