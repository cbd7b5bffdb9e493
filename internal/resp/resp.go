// Package resp reads and writes RESP, the Redis protocol, for the whole
// proxy: client requests (RequestScanner), backend reply frames (Scanner),
// the replies the proxy inspects (errors, MOVED and ASK, bulk strings,
// ROLE, INFO, CLUSTER NODES), and the encoders replies are built with.
package resp

import "errors"

// ErrProtocol is wrapped by every error about bytes that are not the RESP
// expected: a connection whose byte stream can no longer be trusted, or a
// reply the proxy cannot read.
var ErrProtocol = errors.New("RESP protocol error")
