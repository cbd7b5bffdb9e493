package proxy

import (
	"slices"
	"sync"

	"kvproxy/internal/resp"
)

// COMMAND: the command table as Redis' COMMAND, COMMAND INFO, DOCS, LIST,
// COUNT and GETKEYS present it.

// COMMAND replies are built once from the command table.
var commandReplies = sync.OnceValue(buildCommandReplies)

type commandReplySet struct {
	// all is the reply to a plain COMMAND.
	all []byte
	// names are the top-level command names, sorted.
	names []string
	// info and docs hold one command's COMMAND INFO and COMMAND DOCS
	// entries, by top-level name.
	info map[string][]byte
	docs map[string][]byte
}

func buildCommandReplies() *commandReplySet {
	set := &commandReplySet{info: map[string][]byte{}, docs: map[string][]byte{}}
	for name := range commandTable {
		set.names = append(set.names, name)
	}
	slices.Sort(set.names)
	set.all = resp.AppendArray(nil, len(set.names))
	for _, name := range set.names {
		c := commandTable[name]
		entry := appendCommandInfo(nil, c)
		set.info[name] = entry
		set.all = append(set.all, entry...)
		doc := resp.AppendArray(nil, 6)
		doc = resp.AppendBulkString(doc, "summary")
		doc = resp.AppendBulkString(doc, "")
		doc = resp.AppendBulkString(doc, "since")
		doc = resp.AppendBulkString(doc, "1.0.0")
		doc = resp.AppendBulkString(doc, "group")
		doc = resp.AppendBulkString(doc, commandGroup(c))
		set.docs[name] = doc
	}
	return set
}

// commandGroup is a rough COMMAND DOCS group, enough for client help.
func commandGroup(c *CommandInfo) string {
	switch {
	case c.Flags&FlagPubSub != 0:
		return "pubsub"
	case c.Flags&FlagTransaction != 0:
		return "transactions"
	case c.Flags&FlagAdmin != 0:
		return "server"
	case c.Flags&FlagLocal != 0:
		return "connection"
	}
	return "generic"
}

// appendCommandInfo appends c in Redis 7's COMMAND INFO layout: name, arity,
// flags, first key, last key, step, ACL categories, tips, key specs,
// subcommands.
func appendCommandInfo(b []byte, c *CommandInfo) []byte {
	b = resp.AppendArray(b, 10)
	b = resp.AppendBulkString(b, c.Name)
	b = resp.AppendInt(b, int64(c.Arity))
	flags := commandFlagNames(c)
	b = resp.AppendArray(b, len(flags))
	for _, f := range flags {
		b = resp.AppendSimple(b, f)
	}
	b = resp.AppendInt(b, int64(c.FirstKey))
	b = resp.AppendInt(b, int64(c.LastKey))
	b = resp.AppendInt(b, int64(c.KeyStep))
	b = resp.AppendArray(b, 0)
	b = resp.AppendArray(b, 0)
	b = resp.AppendArray(b, 0)
	subs := make([]string, 0, len(c.subcommands))
	for name := range c.subcommands {
		subs = append(subs, name)
	}
	slices.Sort(subs)
	b = resp.AppendArray(b, len(subs))
	for _, name := range subs {
		b = appendCommandInfo(b, c.subcommands[name])
	}
	return b
}

func commandFlagNames(c *CommandInfo) []string {
	var flags []string
	for _, f := range []struct {
		flag CommandFlags
		name string
	}{
		{FlagWrite, "write"},
		{FlagReadOnly, "readonly"},
		{FlagAdmin, "admin"},
		{FlagPubSub, "pubsub"},
		{FlagNoScript, "noscript"},
		{FlagBlocking, "blocking"},
	} {
		if c.Flags&f.flag != 0 {
			flags = append(flags, f.name)
		}
	}
	if c.findKeys != nil {
		flags = append(flags, "movablekeys")
	}
	return flags
}

// command answers COMMAND and its subcommands from the command table.
func (s *session) command(args [][]byte) {
	set := commandReplies()
	mark := len(s.local)
	if len(args) == 1 {
		s.local = append(s.local, set.all...)
		s.localReply(mark)
		return
	}
	sub := s.subcommand(LookupCommand(args[0]), args)
	if sub == nil {
		return
	}
	switch sub.Name {
	case "command|count":
		s.local = resp.AppendInt(s.local, int64(len(set.names)))
	case "command|info":
		if len(args) == 2 {
			s.local = append(s.local, set.all...)
			break
		}
		s.local = resp.AppendArray(s.local, len(args)-2)
		for _, name := range args[2:] {
			if c := LookupCommand(name); c != nil {
				s.local = append(s.local, set.info[c.Name]...)
			} else {
				s.local = append(s.local, "*-1\r\n"...)
			}
		}
	case "command|docs":
		names := set.names
		if len(args) > 2 {
			names = nil
			for _, name := range args[2:] {
				if c := LookupCommand(name); c != nil {
					names = append(names, c.Name)
				}
			}
		}
		s.local = resp.AppendArray(s.local, 2*len(names))
		for _, name := range names {
			s.local = resp.AppendBulkString(s.local, name)
			s.local = append(s.local, set.docs[name]...)
		}
	case "command|list":
		if len(args) > 2 {
			s.local = resp.AppendError(s.local, "ERR COMMAND LIST FILTERBY is not supported by kvproxy")
			break
		}
		s.local = resp.AppendArray(s.local, len(set.names))
		for _, name := range set.names {
			s.local = resp.AppendBulkString(s.local, name)
		}
	case "command|getkeys":
		s.local = appendGetKeys(s.local, args[2:])
	default:
		s.local = resp.AppendError(s.local, unsupportedError(args))
	}
	s.localReply(mark)
}

// appendGetKeys answers COMMAND GETKEYS for the command in args.
func appendGetKeys(b []byte, args [][]byte) []byte {
	c := LookupCommand(args[0])
	if c == nil {
		return resp.AppendError(b, "ERR Invalid command specified")
	}
	if !c.ArityOK(len(args)) {
		return resp.AppendError(b, "ERR Invalid number of arguments specified for command")
	}
	keys := c.KeyIndexes(args, nil)
	if len(keys) == 0 {
		return resp.AppendError(b, "ERR The command has no key arguments")
	}
	b = resp.AppendArray(b, len(keys))
	for _, k := range keys {
		b = resp.AppendBulk(b, args[k])
	}
	return b
}
