package soak

import (
	"errors"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
)

var errMayHaveRun = errors.New("ERR connection lost: the command may have run")

func TestLedgerValues(t *testing.T) {
	l := NewLedger()
	assert.Equal(t, Consistent, l.CheckValue("untracked", "x", true), "keys never written are not judged")

	l.Set("k", "v1", nil)
	assert.Equal(t, Consistent, l.CheckValue("k", "v1", true))
	assert.Equal(t, Lost, l.CheckValue("k", "", false), "an acknowledged key vanished")
	assert.Equal(t, Lost, l.CheckValue("k", "v0", true), "an older value")

	// A write that got an error may or may not have run.
	l.Set("k", "v2", errMayHaveRun)
	assert.Equal(t, Consistent, l.CheckValue("k", "v1", true))
	assert.Equal(t, Consistent, l.CheckValue("k", "v2", true))
	assert.Equal(t, Lost, l.CheckValue("k", "", false))
	assert.Equal(t, Lost, l.CheckValue("k", "v3", true), "a value never written")
	want, ok := l.Acked("k")
	assert.True(t, ok)
	assert.Equal(t, "v1", want)

	// The next acknowledgement settles it.
	l.Set("k", "v3", nil)
	assert.Equal(t, Consistent, l.CheckValue("k", "v3", true))
	assert.Equal(t, Lost, l.CheckValue("k", "v2", true), "unsure values are forgotten once a later write is acknowledged")

	// Never acknowledged: absent is fine, so is the unsure value.
	l.Set("u", "w1", errMayHaveRun)
	assert.Equal(t, Consistent, l.CheckValue("u", "", false))
	assert.Equal(t, Consistent, l.CheckValue("u", "w1", true))
	assert.Equal(t, Lost, l.CheckValue("u", "w0", true))
	_, ok = l.Acked("u")
	assert.False(t, ok)

	assert.ElementsMatch(t, []string{"k", "u"}, l.ValueKeys())
}

func TestLedgerForgetsAKeyWithTooManyUnsureWrites(t *testing.T) {
	l := NewLedger()
	l.Set("k", "acked", nil)
	for i := range maxUnsure + 1 {
		l.Set("k", "unsure"+strconv.Itoa(i), errMayHaveRun)
	}
	assert.Equal(t, Consistent, l.CheckValue("k", "anything", true), "past maxUnsure the value is unknown")
	l.Set("k", "acked2", nil)
	assert.Equal(t, Lost, l.CheckValue("k", "anything", true), "an acknowledgement makes it known again")
	assert.Equal(t, Consistent, l.CheckValue("k", "acked2", true))
}

func TestLedgerCounters(t *testing.T) {
	l := NewLedger()
	assert.Equal(t, Consistent, l.CheckCounter("n", 0))
	assert.Equal(t, Consistent, l.Incr("n", 1, nil))
	assert.Equal(t, Consistent, l.Incr("n", 2, nil))
	assert.Equal(t, Consistent, l.CheckCounter("n", 2))
	assert.Equal(t, Lost, l.CheckCounter("n", 1))
	assert.Equal(t, Duplicated, l.CheckCounter("n", 3))

	// An INCR that got an error may have run: the next one may answer 4.
	assert.Equal(t, Consistent, l.Incr("n", 0, errMayHaveRun))
	acked, unsure := l.CounterRange("n")
	assert.Equal(t, [2]int64{2, 1}, [2]int64{acked, unsure})
	assert.Equal(t, Consistent, l.CheckCounter("n", 2))
	assert.Equal(t, Consistent, l.CheckCounter("n", 3))
	assert.Equal(t, Duplicated, l.CheckCounter("n", 4))
	assert.Equal(t, Consistent, l.Incr("n", 4, nil))

	// An acknowledged INCR that counted twice, or lost a count; each fault
	// is reported once: the ledger takes the answer as the new count.
	assert.Equal(t, Duplicated, l.Incr("n", 6, nil))
	assert.Equal(t, Consistent, l.Incr("n", 7, nil))
	assert.Equal(t, Lost, l.Incr("n", 7, nil))
	assert.Equal(t, Consistent, l.Incr("n", 8, nil))
	assert.Equal(t, Consistent, l.CheckCounter("n", 8))

	assert.Equal(t, []string{"n"}, l.CounterKeys())
	assert.Equal(t, "lost", Lost.String())
	assert.Equal(t, "duplicated", Duplicated.String())
	assert.Equal(t, "consistent", Consistent.String())
}
