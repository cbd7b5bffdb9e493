package keyspace

import (
	"math"
	"math/big"
	"strconv"
	"strings"
)

// parseInt accepts exactly what Redis' string2ll accepts: an optional '-',
// no '+', no spaces, no leading zeros, no "-0", within int64.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := b[0] == '-'
	p := b
	if neg {
		p = p[1:]
	}
	if len(p) == 0 || p[0] < '1' || p[0] > '9' {
		return 0, false
	}
	var v uint64
	for _, c := range p {
		if c < '0' || c > '9' {
			return 0, false
		}
		if v > (math.MaxUint64-9)/10 {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	if neg {
		if v > 1<<63 {
			return 0, false
		}
		return -int64(v), true
	}
	if v > math.MaxInt64 {
		return 0, false
	}
	return int64(v), true
}

// cFloatSyntax converts what C's strtod would consume completely into Go
// syntax; ok is false for text strtod stops short of, or NaN. Leading
// whitespace must be handled by the caller.
func cFloatSyntax(s string) (string, bool) {
	body := strings.TrimLeft(s, "+-")
	if len(s)-len(body) > 1 {
		return "", false
	}
	switch strings.ToLower(body) {
	case "inf", "infinity":
		return s[:len(s)-len(body)] + "inf", true
	}
	if strings.ContainsAny(body, "_nN") || body == "" {
		return "", false
	}
	lower := strings.ToLower(body)
	if strings.HasPrefix(lower, "0x") {
		if len(lower) == 2 || lower[2] == '.' && len(lower) == 3 || lower[2] == 'p' {
			return "", false
		}
		if !strings.Contains(lower, "p") {
			s += "p0"
		}
		return s, true
	}
	if strings.ContainsAny(lower, "xpbo") || strings.HasPrefix(body, ".e") || body == "." {
		return "", false
	}
	return s, true
}

// parseFloat is Redis' getDoubleFromObject: the whole text must be a number,
// no leading space, no overflow, no underflow to zero, no NaN.
func parseFloat(b []byte) (float64, bool) {
	if len(b) == 0 || isCSpace(b[0]) {
		return 0, false
	}
	s, ok := cFloatSyntax(string(b))
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !math.IsInf(f, 0) {
		return 0, false
	}
	if err != nil || (f == 0 && hasNonZeroMantissa(s)) {
		return 0, false // ERANGE on overflow or underflow to zero
	}
	return f, true
}

// parseRangeFloat is the bare strtod use of ZRANGEBYSCORE and friends:
// leading whitespace and overflow are fine, empty text is 0.
func parseRangeFloat(b []byte) (float64, bool) {
	s := strings.TrimLeft(string(b), " \t\n\v\f\r")
	if s == "" {
		return 0, len(b) == 0
	}
	s, ok := cFloatSyntax(s)
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && !math.IsInf(f, 0) {
		if ne, isNum := err.(*strconv.NumError); !isNum || ne.Err != strconv.ErrRange {
			return 0, false
		}
	}
	return f, true
}

func isCSpace(c byte) bool {
	return c == ' ' || (c >= '\t' && c <= '\r')
}

func hasNonZeroMantissa(s string) bool {
	lower := strings.ToLower(s)
	hex := strings.Contains(lower, "0x")
	if hex {
		lower = lower[strings.Index(lower, "0x")+2:]
		if i := strings.IndexByte(lower, 'p'); i >= 0 {
			lower = lower[:i]
		}
		return strings.ContainsAny(lower, "123456789abcdef")
	}
	if i := strings.IndexByte(lower, 'e'); i >= 0 {
		lower = lower[:i]
	}
	return strings.ContainsAny(lower, "123456789")
}

// longDouble emulates the x87 80-bit long double Redis uses for INCRBYFLOAT
// and HINCRBYFLOAT: a 64-bit mantissa and a 15-bit exponent.
type longDouble = big.Float

const (
	ldPrec   = 64
	ldMaxExp = 16384  // |x| >= 2^16384 overflows
	ldMinExp = -16444 // smaller than the least subnormal rounds to zero
)

// parseLongDouble is Redis' string2ld; inf is returned as ok with isInf set.
func parseLongDouble(b []byte) (v *longDouble, isInf, ok bool) {
	if len(b) == 0 || len(b) >= 5*1024 || isCSpace(b[0]) {
		return nil, false, false
	}
	s, ok := cFloatSyntax(string(b))
	if !ok {
		return nil, false, false
	}
	if strings.HasSuffix(s, "inf") {
		return nil, true, true
	}
	v = new(big.Float).SetPrec(ldPrec)
	if _, _, err := v.Parse(s, 0); err != nil {
		return nil, false, false
	}
	if v.Sign() != 0 {
		exp := v.MantExp(nil)
		if exp > ldMaxExp || exp < ldMinExp {
			return nil, false, false // ERANGE: overflow, or underflow to zero
		}
	}
	return v, false, true
}

// addLongDouble adds two finite long doubles; ok is false when the sum
// overflows the long double range (Redis: "would produce NaN or Infinity").
func addLongDouble(a, b *longDouble) (*longDouble, bool) {
	sum := new(big.Float).SetPrec(ldPrec).Add(a, b)
	if sum.Sign() != 0 && sum.MantExp(nil) > ldMaxExp {
		return nil, false
	}
	return sum, true
}

// formatLongDouble prints like Redis' ld2string in human mode: "%.17Lf"
// without trailing zeros, and "0" for negative zero.
func formatLongDouble(v *longDouble) []byte {
	s := v.Text('f', 17)
	if strings.IndexByte(s, '.') >= 0 {
		s = strings.TrimRight(s, "0")
		s = strings.TrimSuffix(s, ".")
	}
	if s == "-0" {
		s = "0"
	}
	return []byte(s)
}

// appendDouble formats a score as Redis 7.0 replies it: "%.17g", inf, -inf.
func appendDouble(out []byte, f float64) []byte {
	switch {
	case math.IsInf(f, 1):
		return append(out, "inf"...)
	case math.IsInf(f, -1):
		return append(out, "-inf"...)
	}
	return strconv.AppendFloat(out, f, 'g', 17, 64)
}

// formatScoreExact prints a score so that parseFloat reads back the same
// double; used in journaled effects and snapshots.
func formatScoreExact(f float64) []byte {
	switch {
	case math.IsInf(f, 1):
		return []byte("inf")
	case math.IsInf(f, -1):
		return []byte("-inf")
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64)
}
