package proxy

import "kvproxy/internal/resp"

// RESP3 sessions. The backends are always spoken to in RESP2: their
// connections are shared by the sessions of both protocols (router/), so a
// RESP3 session's replies are converted where they are written, by the
// command's entry in replyShapes (Redis 7's reply schemas for RESP3). The
// proxy's own replies are built in RESP2 and converted the same way.

// protocol is the RESP version the session speaks (HELLO), 2 or 3; CLIENT
// LIST reports it as resp=.
func (s *session) protocol() int {
	if s.resp3 {
		return 3
	}
	return 2
}

// replyShapes names the commands whose RESP3 reply differs from their RESP2
// one by more than nulls, when that does not depend on their arguments
// (argShape has those). Checked against redis-server by
// TestRESP3MatchesRedis.
var replyShapes = map[string]resp.Shape{
	"hello":                resp.ShapeMap,
	"hgetall":              resp.ShapeMap,
	"config|get":           resp.ShapeMap,
	"xinfo|stream":         streamFull,
	"cluster|shards":       resp.ShapeShards,
	"command":              resp.ShapeCommandInfo,
	"command|info":         resp.ShapeCommandInfo,
	"command|docs":         resp.ShapeMapOfMaps,
	"client|trackinginfo":  resp.ShapeMap,
	"memory|stats":         resp.ShapeMap,
	"pubsub|numsub":        resp.ShapeMap,
	"pubsub|shardnumsub":   resp.ShapeMap,
	"xinfo|groups":         resp.ShapeMaps,
	"xinfo|consumers":      resp.ShapeMaps,
	"smembers":             resp.ShapeSet,
	"sinter":               resp.ShapeSet,
	"sunion":               resp.ShapeSet,
	"sdiff":                resp.ShapeSet,
	"zscore":               resp.ShapeDouble,
	"zincrby":              resp.ShapeDouble,
	"zmscore":              resp.ShapeDoubles,
	"bzpopmin":             resp.ShapeLastDouble,
	"bzpopmax":             resp.ShapeLastDouble,
	"zmpop":                resp.ShapeKeyScorePairs,
	"bzmpop":               resp.ShapeKeyScorePairs,
	"geopos":               resp.ShapeDoubleArrays,
	"xread":                resp.ShapeStreams,
	"xreadgroup":           resp.ShapeStreams,
	"info":                 resp.ShapeVerbatim,
	"client|info":          resp.ShapeVerbatim,
	"client|list":          resp.ShapeVerbatim,
	"cluster|info":         resp.ShapeVerbatim,
	"cluster|nodes":        resp.ShapeVerbatim,
	"lolwut":               resp.ShapeVerbatim,
	"memory|doctor":        resp.ShapeVerbatim,
	"latency|doctor":       resp.ShapeVerbatim,
	"zrange":               withScores,
	"zrangebyscore":        withScores,
	"zrevrange":            withScores,
	"zrevrangebyscore":     withScores,
	"zunion":               withScores,
	"zinter":               withScores,
	"zdiff":                withScores,
	"zrandmember":          withScores,
	"hrandfield":           withValues,
	"zpopmin":              popScores,
	"zpopmax":              popScores,
	"zadd":                 addIncr,
	"geosearch":            withCoord,
	"georadius":            withCoord,
	"georadius_ro":         withCoord,
	"georadiusbymember":    withCoord,
	"georadiusbymember_ro": withCoord,
}

// Shapes that depend on the arguments, resolved by argShape.
const (
	withScores = resp.ShapeVerbatim + 1 + iota
	withValues
	popScores
	addIncr
	withCoord
	streamFull
)

// replyShape is the shape of cmd's reply to args (cmd is the subcommand a
// container names, nil for a command the proxy does not know).
func replyShape(cmd *CommandInfo, args [][]byte) resp.Shape {
	if cmd == nil {
		return resp.ShapePlain
	}
	shape := replyShapes[cmd.Name]
	switch shape {
	case withScores:
		return ifArg(args, "withscores", resp.ShapeScorePairs)
	case withValues:
		return ifArg(args, "withvalues", resp.ShapePairs)
	case addIncr:
		return ifArg(args, "incr", resp.ShapeDouble)
	case withCoord:
		return ifArg(args, "withcoord", resp.ShapeGeoCoords)
	case streamFull:
		// XINFO STREAM key FULL: the key itself may be named full.
		if len(args) > 3 && equalFold(args[3], "full") {
			return resp.ShapeStreamFull
		}
		return resp.ShapeMap
	case popScores:
		// Redis nests [member, score] pairs only when a count is given.
		if len(args) > 2 {
			return resp.ShapeScorePairs
		}
		return resp.ShapeLastDouble
	}
	return shape
}

// ifArg is shape when one of args (past the command name) is opt, else
// ShapePlain.
func ifArg(args [][]byte, opt string, shape resp.Shape) resp.Shape {
	for _, a := range args[1:] {
		if equalFold(a, opt) {
			return shape
		}
	}
	return resp.ShapePlain
}

// shapeEntries marks the entries recorded from first on as replies to a
// RESP3 session's command args.
func (s *session) shapeEntries(first int, args [][]byte) {
	if !s.resp3 || first == len(s.entries) {
		return
	}
	info := LookupCommand(args[0])
	cmd := info
	if info != nil && info.IsContainer() && len(args) > 1 {
		cmd = info.Subcommand(args[1])
	}
	shape := replyShape(cmd, args)
	for i := first; i < len(s.entries); i++ {
		s.entries[i].resp3 = true
		s.entries[i].shape = shape
	}
}

// writeConverted writes one whole RESP2 reply, in RESP3 with shape when
// resp3 is set.
func (s *session) writeConverted(reply []byte, resp3 bool, shape resp.Shape) {
	if !resp3 {
		s.write(reply)
		return
	}
	s.converted = resp.AppendRESP3(s.converted[:0], reply, shape)
	s.write(s.converted)
}
