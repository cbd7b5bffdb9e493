package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"

	"kvproxy/proxy"
)

// The configuration file (--config) is YAML whose keys are the flags' names:
// every flag, present or future, is settable from it with no code of its
// own, plus a users: list (usersKey). Its values are the lowest layer
// above the defaults: the environment and then the command line override
// them.

// usersKey is the file's list of users, each a mapping of name, password
// and role; it has no flag.
const usersKey = "users"

// notInFile are the flags that only make sense on a command line.
var notInFile = map[string]bool{"config": true, "print-config": true, "version": true}

// maskedSecret stands for a secret in --print-config's output. A setting
// still holding it when the proxy starts was copied from that output without
// its secret, and is refused.
const maskedSecret = "<masked>"

// isSecret reports whether flag name holds a secret --print-config masks.
func isSecret(name string) bool {
	return strings.Contains(name, "password") || strings.Contains(name, "token")
}

// configPath is the file --config (or KVPROXY_CONFIG) names. A command
// line asking for help, or that does not parse, names none: fs.Parse
// answers it later, whatever the file holds.
func configPath(args []string, env func(string) string) string {
	var o options
	var seeds, logLevel, logFormat string
	scratch := newFlagSet(&o, &seeds, &logLevel, &logFormat)
	if scratch.Parse(args) != nil {
		return ""
	}
	if o.configFile != "" {
		return o.configFile
	}
	return env(envName("config"))
}

// readConfigFile sets fs's flags from the file at path and returns its
// users. Every problem is returned, each naming its key, so one start
// reports them all.
func readConfigFile(fs *flag.FlagSet, path string) (users []proxy.User, problems []string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("--config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("--config %s: %v", path, err)
	}
	if len(doc.Content) == 0 {
		return nil, nil, nil // an empty file sets nothing
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, nil, fmt.Errorf("--config %s: want a mapping of flag names to values", path)
	}
	seen := make(map[string]bool)
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, value := root.Content[i].Value, root.Content[i+1]
		if seen[key] {
			problems = append(problems, fmt.Sprintf("%s: set twice (line %d)", key, root.Content[i].Line))
			continue
		}
		seen[key] = true
		if key == usersKey {
			var bad []string
			users, bad = readUsers(value)
			problems = append(problems, bad...)
			continue
		}
		if fs.Lookup(key) == nil || notInFile[key] {
			problems = append(problems, fmt.Sprintf("%s: unknown setting (line %d)", key, root.Content[i].Line))
			continue
		}
		text, err := scalarText(value)
		if err == nil {
			err = setFlag(fs, key, text)
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v (line %d)", key, err, value.Line))
		}
	}
	return users, problems, nil
}

// readUsers reads the users: list. A user's password is never part of a
// problem.
func readUsers(list *yaml.Node) (users []proxy.User, problems []string) {
	if list.Kind != yaml.SequenceNode {
		return nil, []string{fmt.Sprintf("%s: want a list of {name, password, role} (line %d)", usersKey, list.Line)}
	}
	for i, item := range list.Content {
		where := fmt.Sprintf("%s[%d] (line %d)", usersKey, i, item.Line)
		if item.Kind != yaml.MappingNode {
			problems = append(problems, where+": want a mapping of name, password and role")
			continue
		}
		var u proxy.User
		var role string
		for j := 0; j+1 < len(item.Content); j += 2 {
			key, value := item.Content[j].Value, item.Content[j+1]
			var field *string
			switch key {
			case "name":
				field = &u.Name
			case "password":
				field = &u.Password
			case "role":
				field = &role
			default:
				problems = append(problems, fmt.Sprintf("%s: unknown key %q: want name, password and role", where, key))
				continue
			}
			if value.Kind != yaml.ScalarNode {
				problems = append(problems, fmt.Sprintf("%s: %s: want a string", where, key))
				continue
			}
			*field = value.Value
		}
		if r, err := proxy.ParseRole(role); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", where, err))
		} else {
			u.Role = r
		}
		users = append(users, u)
	}
	return users, problems
}

// setFlag sets flag name to value, leaving it as it was when value is bad
// (the flag package zeroes a number it cannot parse), so that the checks
// after it do not report the same setting again.
func setFlag(fs *flag.FlagSet, name, value string) error {
	before := fs.Lookup(name).Value.String()
	err := fs.Set(name, value)
	if err != nil {
		_ = fs.Set(name, before)
	}
	return err
}

// scalarText is a flag's value as the command line would spell it: a scalar
// as is, a list of scalars joined by commas (seeds: [a:1, b:2]).
func scalarText(n *yaml.Node) (string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "", nil
		}
		return n.Value, nil
	case yaml.SequenceNode:
		items := make([]string, 0, len(n.Content))
		for _, item := range n.Content {
			if item.Kind != yaml.ScalarNode {
				return "", errors.New("want a value or a list of values")
			}
			items = append(items, item.Value)
		}
		return strings.Join(items, ","), nil
	}
	return "", errors.New("want a value or a list of values")
}

// printConfig renders fs's effective settings and users as a
// configuration file --config loads, secrets masked.
func printConfig(fs *flag.FlagSet, users []proxy.User) ([]byte, error) {
	root := &yaml.Node{Kind: yaml.MappingNode}
	fs.VisitAll(func(f *flag.Flag) {
		if notInFile[f.Name] {
			return
		}
		value := f.Value.String()
		var node *yaml.Node
		switch {
		case isSecret(f.Name) && value != "":
			node = stringNode(maskedSecret)
		case f.Name == "seeds":
			node = &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, s := range strings.Split(value, ",") {
				if s = strings.TrimSpace(s); s != "" {
					node.Content = append(node.Content, stringNode(s))
				}
			}
		default:
			node = &yaml.Node{Kind: yaml.ScalarNode, Value: value}
			if _, isString := f.Value.(flag.Getter).Get().(string); isString {
				node = stringNode(value)
			}
		}
		root.Content = append(root.Content, stringNode(f.Name), node)
	})
	if len(users) > 0 {
		list := &yaml.Node{Kind: yaml.SequenceNode}
		for _, u := range users {
			list.Content = append(list.Content, &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
				stringNode("name"), stringNode(u.Name),
				stringNode("password"), stringNode(maskedSecret),
				stringNode("role"), stringNode(u.Role.String()),
			}})
		}
		root.Content = append(root.Content, stringNode(usersKey), list)
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// stringNode is s as a YAML string, quoted when it would read as another
// type.
func stringNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}
