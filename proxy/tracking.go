package proxy

import "kvproxy/internal/resp"

// Client-side caching. Kvrocks has no key tracking, so the proxy tracks no
// key and sends no invalidation. It still accepts CLIENT TRACKING ON OPTIN,
// which tracks nothing until CLIENT CACHING YES: rueidis sends it on every
// RESP3 connection with default options and does not connect when it is
// refused. CLIENT CACHING YES is refused, and so is the command after it
// (the one the client asked to have tracked), so a cache that would never
// be invalidated is never filled: rueidis' DoCache gets an error, Do works.
// Every other tracking mode is refused at once.

const (
	errTrackingMode = "ERR kvproxy supports no client-side caching: only CLIENT TRACKING ON OPTIN (which tracks nothing) and OFF are accepted"
	errCaching      = "ERR kvproxy supports no client-side caching: CLIENT CACHING YES is refused, and so is the command after it"
)

// tracking answers CLIENT TRACKING ON OPTIN and CLIENT TRACKING OFF.
func (s *session) tracking(args [][]byte) []byte {
	switch {
	case len(args) == 3 && equalFold(args[2], "off"):
		s.trackingOptIn = false
	case len(args) == 4 && equalFold(args[2], "on") && equalFold(args[3], "optin"):
		s.trackingOptIn = true
	case !equalFold(args[2], "on") && !equalFold(args[2], "off"):
		return resp.AppendError(s.local, "ERR syntax error")
	default:
		return resp.AppendError(s.local, errTrackingMode)
	}
	return resp.AppendSimple(s.local, "OK")
}

// caching answers CLIENT CACHING: YES is refused, and arms the refusal of
// the next command (refuseCached).
func (s *session) caching(args [][]byte) []byte {
	switch {
	case !equalFold(args[2], "yes") && !equalFold(args[2], "no"):
		return resp.AppendError(s.local, "ERR syntax error")
	case !s.trackingOptIn:
		return resp.AppendError(s.local, "ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled")
	case equalFold(args[2], "no"):
		return resp.AppendError(s.local, "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.")
	}
	s.cachingAsked = true
	return resp.AppendError(s.local, errCaching)
}

// refuseCached answers the command after CLIENT CACHING YES with an error,
// and reports whether it did.
func (s *session) refuseCached() bool {
	if !s.cachingAsked {
		return false
	}
	s.cachingAsked = false
	s.replyError(errCaching)
	return true
}
