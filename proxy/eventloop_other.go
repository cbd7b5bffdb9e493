//go:build !linux

package proxy

import "errors"

// eventLoop exists on Linux only (eventloop_linux.go); elsewhere every
// client is served by a goroutine of its own.
type eventLoop struct{}

const eventLoopsSupported = false

func newEventLoop() (*eventLoop, error) { return nil, errors.New("event loops need Linux") }

func (l *eventLoop) add(*client) error { return errors.New("event loops need Linux") }
func (l *eventLoop) remove(*client)    {}
func (l *eventLoop) close()            {}
