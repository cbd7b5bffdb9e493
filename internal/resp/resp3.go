package resp

import (
	"errors"
	"strconv"
)

// RESP3 for clients whose backends speak RESP2: a RESP2 reply is re-framed
// as the RESP3 reply Redis 7 gives the same command, by the reply's Shape.

// Shape is how a command's RESP2 reply reads in RESP3 (Redis' reply
// schemas). Every shape turns a nil bulk or nil array into RESP3's null, at
// any depth; a reply that does not fit its shape (an error, say) is
// converted as ShapePlain.
type Shape uint8

const (
	// ShapePlain: only nulls change.
	ShapePlain Shape = iota
	// ShapeMap: a flat array of field, value pairs becomes a map.
	ShapeMap
	// ShapeSet: an array becomes a set.
	ShapeSet
	// ShapeDouble: a bulk string holding a number becomes a double.
	ShapeDouble
	// ShapeDoubles: an array of such bulk strings (or nils) becomes an
	// array of doubles (ZMSCORE).
	ShapeDoubles
	// ShapeScorePairs: a flat array of member, score becomes an array of
	// [member, double] pairs (ZRANGE ... WITHSCORES).
	ShapeScorePairs
	// ShapeLastDouble: an array whose last element is a score gets it as a
	// double ([member, score] of ZPOPMIN without a count, [key, member,
	// score] of BZPOPMIN).
	ShapeLastDouble
	// ShapePairs: a flat array of field, value becomes an array of [field,
	// value] pairs (HRANDFIELD ... WITHVALUES).
	ShapePairs
	// ShapeMaps: an array of flat field, value arrays becomes an array of
	// maps (XINFO GROUPS, XINFO CONSUMERS).
	ShapeMaps
	// ShapeStreams: XREAD's array of [stream, entries] becomes a map from
	// stream to entries.
	ShapeStreams
	// ShapeKeyScorePairs: [key, [[member, score] ...]] gets its scores as
	// doubles (ZMPOP, BZMPOP).
	ShapeKeyScorePairs
	// ShapeDoubleArrays: an array of arrays of numbers (or nils) gets the
	// numbers as doubles (GEOPOS).
	ShapeDoubleArrays
	// ShapeGeoCoords: an array of arrays whose last element is a
	// [longitude, latitude] pair gets the pair as doubles (GEOSEARCH ...
	// WITHCOORD).
	ShapeGeoCoords
	// ShapeStreamFull: XINFO STREAM FULL's flat map becomes a map, its
	// groups maps and their consumers maps.
	ShapeStreamFull
	// ShapeShards: CLUSTER SHARDS' array of flat maps becomes an array of
	// maps, their nodes maps.
	ShapeShards
	// ShapeCommandInfo: COMMAND INFO's array of command entries (or nils)
	// gets each entry's flags, ACL categories, tips and key specs as sets,
	// and its subcommands as entries, an empty list of them a set, as Redis
	// 7.0 sends them.
	ShapeCommandInfo
	// ShapeMapOfMaps: a flat map whose values are flat maps (COMMAND
	// DOCS).
	ShapeMapOfMaps
	// ShapeVerbatim: a bulk string becomes a verbatim string of format
	// "txt" (INFO, CLIENT LIST, CLUSTER NODES ...). It is the last shape.
	ShapeVerbatim
)

var errMalformed = errors.New("resp: malformed RESP2 reply")

// AppendRESP3 appends to dst the RESP3 form of reply, one whole RESP2
// reply, by shape. A reply that is not well-formed RESP2 is appended
// unchanged, so a bug in the table cannot lose a client's reply.
func AppendRESP3(dst, reply []byte, shape Shape) []byte {
	mark := len(dst)
	out, next, err := convertShaped(dst, reply, 0, shape)
	if err != nil || next != len(reply) {
		out, next, err = convert(dst[:mark], reply, 0, 0)
		if err != nil || next != len(reply) {
			return append(dst[:mark], reply...)
		}
	}
	return out
}

// AppendRESP3Elements appends to dst the RESP3 form of reply, an array
// whose i-th element is converted by shapes[i] (EXEC's reply, by its queued
// commands' shapes). A nil array becomes null; an error, an array of
// another length or a reply that is not well-formed RESP2 is converted as
// AppendRESP3 converts it plainly.
func AppendRESP3Elements(dst, reply []byte, shapes []Shape) []byte {
	typ, n, next, err := header(reply, 0)
	if err != nil || typ != '*' || n != int64(len(shapes)) {
		return AppendRESP3(dst, reply, ShapePlain)
	}
	mark := len(dst)
	dst = append(dst, reply[:next]...)
	for _, shape := range shapes {
		at := len(dst)
		out, end, err := convertShaped(dst, reply, next, shape)
		if err != nil {
			// An element that does not fit its shape (an error) stays plain.
			if out, end, err = convert(dst[:at], reply, next, 1); err != nil {
				return append(dst[:mark], reply...)
			}
		}
		dst, next = out, end
	}
	if next != len(reply) {
		return append(dst[:mark], reply...)
	}
	return dst
}

// maxDepth bounds nesting, as the proxy's reply scanner does not.
const maxDepth = 512

// header reads an array or bulk header at at: its type, length and the
// offset after the line.
func header(src []byte, at int) (typ byte, n int64, next int, err error) {
	if at >= len(src) {
		return 0, 0, 0, errMalformed
	}
	line, skip, ok := ReplyLine(src[at:])
	if !ok {
		return 0, 0, 0, errMalformed
	}
	typ = src[at]
	next = at + skip
	if typ == '*' || typ == '$' {
		if n, ok = ParseInt(line); !ok || n < -1 {
			return 0, 0, 0, errMalformed
		}
	}
	return typ, n, next, nil
}

// convert appends the element at src[at:] with nulls turned into RESP3's,
// recursively, and returns the offset after it.
func convert(dst, src []byte, at, depth int) ([]byte, int, error) {
	if depth > maxDepth {
		return dst, 0, errMalformed
	}
	typ, n, next, err := header(src, at)
	if err != nil {
		return dst, 0, err
	}
	switch typ {
	case '+', '-', ':':
		return append(dst, src[at:next]...), next, nil
	case '$':
		if n == -1 {
			return append(dst, "_\r\n"...), next, nil
		}
		end := next + int(n) + 2
		if n > int64(len(src)) || end > len(src) || src[end-2] != '\r' || src[end-1] != '\n' {
			return dst, 0, errMalformed
		}
		return append(dst, src[at:end]...), end, nil
	case '*':
		if n == -1 {
			return append(dst, "_\r\n"...), next, nil
		}
		dst = append(dst, src[at:next]...)
		for range n {
			if dst, next, err = convert(dst, src, next, depth+1); err != nil {
				return dst, 0, err
			}
		}
		return dst, next, nil
	}
	return dst, 0, errMalformed
}

// convertShaped appends the reply at src[at:] in its shape; an error means
// it does not fit (the caller converts it plainly).
func convertShaped(dst, src []byte, at int, shape Shape) ([]byte, int, error) {
	typ, n, next, err := header(src, at)
	if err != nil {
		return dst, 0, err
	}
	if shape == ShapePlain || (typ == '*' || typ == '$') && n == -1 {
		return convert(dst, src, at, 0)
	}
	switch shape {
	case ShapeDouble:
		return appendDouble(dst, src, at)
	case ShapeVerbatim:
		data, end, ok := BulkAt(src, at)
		if !ok {
			return dst, 0, errMalformed
		}
		dst = append(dst, '=')
		dst = strconv.AppendInt(dst, int64(len(data))+4, 10)
		dst = append(dst, "\r\ntxt:"...)
		dst = append(dst, data...)
		return append(dst, "\r\n"...), end, nil
	}
	if typ != '*' {
		return dst, 0, errMalformed
	}
	switch shape {
	case ShapeMap, ShapeSet:
		if shape == ShapeMap {
			if n%2 != 0 {
				return dst, 0, errMalformed
			}
			dst = appendAggregate(dst, '%', n/2)
		} else {
			dst = appendAggregate(dst, '~', n)
		}
		return convertElements(dst, src, next, n)
	case ShapeDoubles:
		dst = appendAggregate(dst, '*', n)
		for range n {
			if dst, next, err = appendDouble(dst, src, next); err != nil {
				return dst, 0, err
			}
		}
		return dst, next, nil
	case ShapeScorePairs, ShapePairs:
		if n%2 != 0 {
			return dst, 0, errMalformed
		}
		dst = appendAggregate(dst, '*', n/2)
		for range n / 2 {
			dst = appendAggregate(dst, '*', 2)
			if dst, next, err = convert(dst, src, next, 1); err != nil {
				return dst, 0, err
			}
			if shape == ShapeScorePairs {
				dst, next, err = appendDouble(dst, src, next)
			} else {
				dst, next, err = convert(dst, src, next, 1)
			}
			if err != nil {
				return dst, 0, err
			}
		}
		return dst, next, nil
	case ShapeLastDouble:
		if n < 1 {
			return dst, 0, errMalformed
		}
		dst = appendAggregate(dst, '*', n)
		if dst, next, err = convertElements(dst, src, next, n-1); err != nil {
			return dst, 0, err
		}
		return appendDouble(dst, src, next)
	case ShapeKeyScorePairs:
		if n != 2 {
			return dst, 0, errMalformed
		}
		dst = appendAggregate(dst, '*', 2)
		if dst, next, err = convert(dst, src, next, 1); err != nil {
			return dst, 0, err
		}
		typ, pairs, after, err := header(src, next)
		if err != nil || typ != '*' || pairs < 0 {
			return dst, 0, errMalformed
		}
		dst = appendAggregate(dst, '*', pairs)
		for range pairs {
			if dst, after, err = convertShaped(dst, src, after, ShapeLastDouble); err != nil {
				return dst, 0, err
			}
		}
		return dst, after, nil
	case ShapeDoubleArrays, ShapeMaps:
		inner := ShapeMap
		if shape == ShapeDoubleArrays {
			inner = ShapeDoubles
		}
		dst = appendAggregate(dst, '*', n)
		for range n {
			if dst, next, err = convertShaped(dst, src, next, inner); err != nil {
				return dst, 0, err
			}
		}
		return dst, next, nil
	case ShapeGeoCoords:
		dst = appendAggregate(dst, '*', n)
		for range n {
			typ, fields, after, err := header(src, next)
			if err != nil || typ != '*' || fields < 1 {
				return dst, 0, errMalformed
			}
			dst = appendAggregate(dst, '*', fields)
			if dst, after, err = convertElements(dst, src, after, fields-1); err != nil {
				return dst, 0, err
			}
			if dst, next, err = convertShaped(dst, src, after, ShapeDoubles); err != nil {
				return dst, 0, err
			}
		}
		return dst, next, nil
	case ShapeStreamFull:
		return convertNestedMap(dst, src, at, "groups", "consumers")
	case ShapeCommandInfo:
		return convertCommandEntries(dst, src, at, 0)
	case ShapeMapOfMaps:
		if n%2 != 0 {
			return dst, 0, errMalformed
		}
		dst = appendAggregate(dst, '%', n/2)
		for range n / 2 {
			if dst, next, err = convert(dst, src, next, 1); err != nil {
				return dst, 0, err
			}
			if dst, next, err = convertShaped(dst, src, next, ShapeMap); err != nil {
				return dst, 0, err
			}
		}
		return dst, next, nil
	case ShapeShards:
		dst = appendAggregate(dst, '*', n)
		for range n {
			if dst, next, err = convertNestedMap(dst, src, next, "nodes"); err != nil {
				return dst, 0, err
			}
		}
		return dst, next, nil
	case ShapeStreams:
		dst = appendAggregate(dst, '%', n)
		for range n {
			typ, pair, after, err := header(src, next)
			if err != nil || typ != '*' || pair != 2 {
				return dst, 0, errMalformed
			}
			if dst, next, err = convertElements(dst, src, after, 2); err != nil {
				return dst, 0, err
			}
		}
		return dst, next, nil
	}
	return dst, 0, errMalformed
}

// convertNestedMap appends the flat field, value array at src[at:] as a
// map whose value under field path[0] is an array of such maps, nested by
// the rest of path.
func convertNestedMap(dst, src []byte, at int, path ...string) ([]byte, int, error) {
	typ, n, next, err := header(src, at)
	if err != nil || typ != '*' || n < 0 || n%2 != 0 {
		return dst, 0, errMalformed
	}
	dst = appendAggregate(dst, '%', n/2)
	for range n / 2 {
		field, _, _ := BulkAt(src, next)
		if dst, next, err = convert(dst, src, next, 1); err != nil {
			return dst, 0, err
		}
		if len(path) == 0 || string(field) != path[0] {
			if dst, next, err = convert(dst, src, next, 1); err != nil {
				return dst, 0, err
			}
			continue
		}
		typ, items, after, err := header(src, next)
		if err != nil || typ != '*' || items < 0 {
			return dst, 0, errMalformed
		}
		dst = appendAggregate(dst, '*', items)
		for range items {
			if dst, after, err = convertNestedMap(dst, src, after, path[1:]...); err != nil {
				return dst, 0, err
			}
		}
		next = after
	}
	return dst, next, nil
}

// commandEntryLen is the length of a COMMAND INFO entry; commandSets are the
// indexes of its elements that are sets in RESP3 (flags, ACL categories,
// tips, key specs), commandSubcommands that of its subcommands.
const (
	commandEntryLen    = 10
	commandSubcommands = 9
)

var commandSets = [commandEntryLen]bool{2: true, 6: true, 7: true, 8: true}

// convertCommandEntries appends the array of COMMAND INFO entries at
// src[at:] (see ShapeCommandInfo); depth is the subcommand nesting.
func convertCommandEntries(dst, src []byte, at, depth int) ([]byte, int, error) {
	typ, n, next, err := header(src, at)
	if err != nil || typ != '*' || n < 0 || depth > 2 {
		return dst, 0, errMalformed
	}
	if n == 0 && depth > 0 {
		return append(dst, "~0\r\n"...), next, nil
	}
	dst = appendAggregate(dst, '*', n)
	for range n {
		typ, fields, after, err := header(src, next)
		switch {
		case err != nil:
			return dst, 0, err
		case typ == '*' && fields == -1:
			dst, next = append(dst, "_\r\n"...), after
			continue
		case typ != '*' || fields != commandEntryLen:
			return dst, 0, errMalformed
		}
		dst = appendAggregate(dst, '*', fields)
		for i := range commandEntryLen {
			switch {
			case i == commandSubcommands:
				dst, after, err = convertCommandEntries(dst, src, after, depth+1)
			case commandSets[i]:
				var items int64
				if typ, items, after, err = header(src, after); err == nil && (typ != '*' || items < 0) {
					err = errMalformed
				}
				if err == nil {
					dst = appendAggregate(dst, '~', items)
					dst, after, err = convertElements(dst, src, after, items)
				}
			default:
				dst, after, err = convert(dst, src, after, 1)
			}
			if err != nil {
				return dst, 0, err
			}
		}
		next = after
	}
	return dst, next, nil
}

// convertElements converts n elements from src[at:] plainly.
func convertElements(dst, src []byte, at int, n int64) ([]byte, int, error) {
	var err error
	for range n {
		if dst, at, err = convert(dst, src, at, 1); err != nil {
			return dst, 0, err
		}
	}
	return dst, at, nil
}

func appendAggregate(dst []byte, typ byte, n int64) []byte {
	dst = append(dst, typ)
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, "\r\n"...)
}

// appendDouble appends the bulk string at src[at:] as a double, keeping
// the server's text (Redis formats both the same way); a nil stays null.
func appendDouble(dst, src []byte, at int) ([]byte, int, error) {
	data, end, ok := BulkAt(src, at)
	if !ok {
		return dst, 0, errMalformed
	}
	if data == nil {
		return append(dst, "_\r\n"...), end, nil
	}
	if _, err := strconv.ParseFloat(string(data), 64); err != nil && !isInfinity(data) {
		return dst, 0, errMalformed
	}
	dst = append(dst, ',')
	dst = append(dst, data...)
	return append(dst, "\r\n"...), end, nil
}

func isInfinity(b []byte) bool {
	switch string(b) {
	case "inf", "-inf", "+inf":
		return true
	}
	return false
}

// AppendPushes appends frames, consecutive RESP2 Pub/Sub arrays, as RESP3
// pushes (nulls converted); anything else in frames is appended unchanged
// from there on.
func AppendPushes(dst, frames []byte) []byte {
	for at := 0; at < len(frames); {
		if frames[at] != '*' {
			return append(dst, frames[at:]...)
		}
		mark := len(dst)
		out, next, err := convert(dst, frames, at, 0)
		if err != nil {
			return append(dst[:mark], frames[at:]...)
		}
		out[mark] = '>'
		dst, at = out, next
	}
	return dst
}
