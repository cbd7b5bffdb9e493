package resp

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestStringText(t *testing.T) {
	for _, tc := range []struct {
		reply, text string
		ok          bool
	}{
		{"$16\r\nrole:master\r\nx:1\r\n", "role:master\r\nx:1", true},
		{"=15\r\ntxt:role:master\r\n", "role:master", true},
		{"$0\r\n\r\n", "", true},
		{"+OK\r\n", "", false},
		{"-ERR x\r\n", "", false},
		{"$3\r\n", "", false},
		{"", "", false},
	} {
		text, ok := StringText([]byte(tc.reply))
		assert.Equal(t, tc.ok, ok, "%q", tc.reply)
		assert.Equal(t, tc.text, text, "%q", tc.reply)
	}
}
