package proxy

import (
	"bytes"
	"strconv"
	"strings"

	"kvproxy/internal/resp"
	"kvproxy/router"
)

// INFO's keyspace section: the masters' own, summed database by database,
// so it describes the whole cluster as one server's would.

// dbStats is one database's line of INFO keyspace, its fields in the
// order the first master printed them.
type dbStats struct {
	db     int64
	fields []string
	values map[string]int64
	// ttlWeight sums avg_ttl times the expiring keys it averages over.
	ttlWeight float64
}

// writeKeyspace prints the keyspace section summed over the replies (the
// masters' INFO keyspace); a master that did not answer is counted, not
// guessed.
func writeKeyspace(b *strings.Builder, replies []*router.Request) {
	var dbs []*dbStats
	unanswered := 0
	for _, q := range replies {
		text, ok := bulkText(q.Reply)
		if !ok {
			unanswered++
			continue
		}
		dbs = addKeyspace(dbs, text)
	}
	b.WriteString("# Keyspace\r\n")
	for _, d := range dbs {
		b.WriteString("db" + itoa(d.db) + ":")
		for i, field := range d.fields {
			if i > 0 {
				b.WriteByte(',')
			}
			value := d.values[field]
			if field == "avg_ttl" && d.values["expires"] > 0 {
				value = int64(d.ttlWeight / float64(d.values["expires"]))
			}
			b.WriteString(field + "=" + itoa(value))
		}
		b.WriteString("\r\n")
	}
	if unanswered > 0 {
		b.WriteString("keyspace_unanswered_masters:" + strconv.Itoa(unanswered) + "\r\n")
	}
}

// bulkText is the text of a bulk string reply.
func bulkText(reply []byte) ([]byte, bool) {
	line, body, ok := resp.ReplyLine(reply)
	if !ok || reply[0] != '$' {
		return nil, false
	}
	n, isInt := resp.ParseInt(line)
	if !isInt || n < 0 || int64(len(reply)-body) != n+2 {
		return nil, false
	}
	return reply[body : body+int(n)], true
}

// addKeyspace adds the "dbN:field=value,..." lines of one master's INFO
// keyspace text to dbs; other lines (headers, Kvrocks' extra fields) and
// malformed values are skipped. avg_ttl is weighted by the expiring keys
// it averages over, so the sum averages over every master's.
func addKeyspace(dbs []*dbStats, text []byte) []*dbStats {
	for name, rest := range resp.InfoFields(text) {
		if !bytes.HasPrefix(name, []byte("db")) {
			continue
		}
		db, ok := redisInt(name[2:])
		if !ok || db < 0 {
			continue
		}
		d := findDB(&dbs, db)
		var expires, ttl int64
		for _, pair := range bytes.Split(rest, []byte(",")) {
			field, value, found := bytes.Cut(pair, []byte("="))
			n, isInt := resp.ParseInt(value)
			if !found || !isInt || len(field) == 0 {
				continue
			}
			key := string(field)
			if _, seen := d.values[key]; !seen {
				d.fields = append(d.fields, key)
			}
			d.values[key] += n
			switch key {
			case "expires":
				expires = n
			case "avg_ttl":
				ttl = n
			}
		}
		d.ttlWeight += float64(ttl) * float64(expires)
	}
	return dbs
}

// findDB returns db's entry, added in database order when new.
func findDB(dbs *[]*dbStats, db int64) *dbStats {
	i := 0
	for ; i < len(*dbs); i++ {
		if (*dbs)[i].db == db {
			return (*dbs)[i]
		}
		if (*dbs)[i].db > db {
			break
		}
	}
	d := &dbStats{db: db, values: map[string]int64{}}
	*dbs = append((*dbs)[:i], append([]*dbStats{d}, (*dbs)[i:]...)...)
	return d
}
