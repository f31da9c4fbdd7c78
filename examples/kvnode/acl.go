package main

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Users and permissions follow Redis ACLs, reduced to what kvnode needs.
//
// A user has a name, an on/off switch, password hashes (SHA-256, as Redis
// keeps them) or "nopass", command categories (@read, @write, @admin,
// @all) and key patterns (~app:*). Users live in the replicated state:
// ACL SETUSER and ACL DELUSER are proposed through the raft log, so every
// member enforces the same rules, and passwords reach the log only as
// hashes (the proposer turns ">secret" into "#<sha256>").
//
// The "default" user is the one a connection has before AUTH. Until ACL
// SETUSER defines it, it is implicit: "on nopass ~* +@all", or with
// -requirepass "on #<hash of it> ~* +@all". With TLS and no -requirepass
// the implicit default user lacks @admin: a certificate from the cluster's
// CA lets a client read and write, but changing membership or users needs
// a user with a password.

// Command categories.
const (
	catRead  uint8 = 1 << iota // GET, MGET, EXISTS, TTL, PTTL; HTTP GET /kv
	catWrite                   // SET, DEL, INCR..., APPEND, MSET; HTTP PUT/DELETE /kv
	catAdmin                   // ACL changes and listings; membership and leader transfer over HTTP
	catAll   = catRead | catWrite | catAdmin
)

var categoryNames = []struct {
	name string
	bit  uint8
}{{"read", catRead}, {"write", catWrite}, {"admin", catAdmin}}

// Limits on ACL input.
const (
	maxUsers       = 1 << 12
	maxUserName    = 128
	maxRules       = 256
	maxRuleLen     = 1024
	maxUserItems   = 64 // passwords, and key patterns, per user
	defaultUser    = "default"
	passwordHexLen = 2 * sha256.Size
)

var errACL = errors.New("kvnode: bad ACL rule")

// aclUser is one user. Users are never modified in place once stored, so
// readers may share them.
type aclUser struct {
	name      string
	on        bool
	nopass    bool
	passwords []string // hex SHA-256, sorted
	cats      uint8
	keys      []string // glob patterns, in the order given
}

func hashPassword(p string) string {
	h := sha256.Sum256([]byte(p))
	return hex.EncodeToString(h[:])
}

// checkPassword reports whether p is one of u's passwords (any p if nopass).
func (u *aclUser) checkPassword(p string) bool {
	if !u.on {
		return false
	}
	if u.nopass {
		return true
	}
	h := hashPassword(p)
	ok := false
	for _, x := range u.passwords {
		ok = subtle.ConstantTimeCompare([]byte(x), []byte(h)) == 1 || ok
	}
	return ok
}

// canKey reports whether u may touch key.
func (u *aclUser) canKey(key []byte) bool {
	for _, p := range u.keys {
		if globMatch(p, key) {
			return true
		}
	}
	return false
}

func validUserName(name string) error {
	if name == "" || len(name) > maxUserName {
		return fmt.Errorf("%w: user name must be 1 to %d bytes", errACL, maxUserName)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return fmt.Errorf("%w: user name has byte %#x (printable ASCII other than ':' only)", errACL, c)
		}
	}
	return nil
}

// hashRules returns rules with clear-text passwords (">p", "<p") replaced
// by their hashes ("#h", "!h"), so that only hashes are replicated.
func hashRules(rules []string) []string {
	out := make([]string, len(rules))
	for i, r := range rules {
		switch {
		case strings.HasPrefix(r, ">"):
			out[i] = "#" + hashPassword(r[1:])
		case strings.HasPrefix(r, "<"):
			out[i] = "!" + hashPassword(r[1:])
		default:
			out[i] = r
		}
	}
	return out
}

// applyRules returns a copy of u (nil: a new user, off and without
// permissions, as in Redis) with rules applied in order.
func applyRules(name string, u *aclUser, rules []string) (*aclUser, error) {
	if err := validUserName(name); err != nil {
		return nil, err
	}
	if len(rules) > maxRules {
		return nil, fmt.Errorf("%w: more than %d rules", errACL, maxRules)
	}
	n := &aclUser{name: name}
	if u != nil {
		*n = *u
		n.passwords = slices.Clone(u.passwords)
		n.keys = slices.Clone(u.keys)
	}
	for _, r := range rules {
		if err := n.apply(r); err != nil {
			return nil, err
		}
	}
	if len(n.passwords) > maxUserItems || len(n.keys) > maxUserItems {
		return nil, fmt.Errorf("%w: more than %d passwords or key patterns", errACL, maxUserItems)
	}
	return n, nil
}

func (u *aclUser) apply(r string) error {
	if r == "" || len(r) > maxRuleLen {
		return fmt.Errorf("%w: rule must be 1 to %d bytes", errACL, maxRuleLen)
	}
	lower := strings.ToLower(r)
	switch lower {
	case "on":
		u.on = true
		return nil
	case "off":
		u.on = false
		return nil
	case "nopass":
		u.nopass, u.passwords = true, nil
		return nil
	case "resetpass":
		u.nopass, u.passwords = false, nil
		return nil
	case "allkeys":
		u.keys = []string{"*"}
		return nil
	case "resetkeys":
		u.keys = nil
		return nil
	case "allcommands", "+@all":
		u.cats = catAll
		return nil
	case "nocommands", "-@all":
		u.cats = 0
		return nil
	case "reset":
		*u = aclUser{name: u.name}
		return nil
	}
	switch r[0] {
	case '#', '!':
		h := strings.ToLower(r[1:])
		if len(h) != passwordHexLen || strings.Trim(h, "0123456789abcdef") != "" {
			return fmt.Errorf("%w: %q: the hash must be %d hex digits", errACL, r[:1], passwordHexLen)
		}
		i, found := slices.BinarySearch(u.passwords, h)
		if r[0] == '#' {
			if !found {
				u.passwords = slices.Insert(u.passwords, i, h)
			}
			u.nopass = false
		} else if found {
			u.passwords = slices.Delete(u.passwords, i, i+1)
		}
		return nil
	case '>', '<':
		// Only reachable for rules not passed through hashRules.
		return u.apply(hashRules([]string{r})[0])
	case '~':
		if !slices.Contains(u.keys, r[1:]) {
			u.keys = append(u.keys, r[1:])
		}
		return nil
	case '+', '-':
		if strings.HasPrefix(lower[1:], "@") {
			for _, c := range categoryNames {
				if lower[2:] == c.name {
					if r[0] == '+' {
						u.cats |= c.bit
					} else {
						u.cats &^= c.bit
					}
					return nil
				}
			}
			return fmt.Errorf("%w: unknown category %q (kvnode has @read, @write, @admin, @all)", errACL, r[1:])
		}
		return fmt.Errorf("%w: %q: kvnode grants command categories only (+@read, +@write, +@admin, +@all)", errACL, r)
	}
	return fmt.Errorf("%w: unknown rule %q", errACL, r)
}

// describe renders u as ACL LIST does: "user alice on #… ~app:* +@read".
func (u *aclUser) describe() string {
	var b strings.Builder
	b.WriteString("user ")
	b.WriteString(u.name)
	if u.on {
		b.WriteString(" on")
	} else {
		b.WriteString(" off")
	}
	if u.nopass {
		b.WriteString(" nopass")
	}
	for _, h := range u.passwords {
		b.WriteString(" #" + h)
	}
	if len(u.keys) == 0 {
		b.WriteString(" resetkeys")
	}
	for _, k := range u.keys {
		b.WriteString(" ~" + k)
	}
	switch u.cats {
	case catAll:
		b.WriteString(" +@all")
	case 0:
		b.WriteString(" -@all")
	default:
		b.WriteString(" -@all")
		for _, c := range categoryNames {
			if u.cats&c.bit != 0 {
				b.WriteString(" +@" + c.name)
			}
		}
	}
	return b.String()
}

// globMatch reports whether key matches pattern as Redis's glob-style
// patterns do: * (any run), ? (any byte), [abc], [^a], [a-z] and \x. It
// runs in O(len(pattern)·len(key)) time (no backtracking blow-up).
func globMatch(pattern string, key []byte) bool {
	p := []byte(pattern)
	// Positions to resume from after the last *.
	px, kx := 0, 0
	starP, starK := -1, -1
	for kx < len(key) || px < len(p) {
		if px < len(p) {
			switch c := p[px]; c {
			case '*':
				starP, starK = px, kx
				px++
				continue
			case '?':
				if kx < len(key) {
					px++
					kx++
					continue
				}
			case '[':
				if kx < len(key) {
					if ok, next := matchClass(p, px, key[kx]); ok {
						px, kx = next, kx+1
						continue
					}
				}
			case '\\':
				if px+1 < len(p) {
					c = p[px+1]
					if kx < len(key) && key[kx] == c {
						px, kx = px+2, kx+1
						continue
					}
					break
				}
				fallthrough
			default:
				if kx < len(key) && key[kx] == c {
					px++
					kx++
					continue
				}
			}
		}
		if starP >= 0 && starK < len(key) {
			starK++
			px, kx = starP+1, starK
			continue
		}
		return false
	}
	return true
}

// matchClass matches c against the class starting at p[i] == '['; it
// returns whether c is in it and the index after the class. An
// unterminated class matches a literal '['.
func matchClass(p []byte, i int, c byte) (bool, int) {
	j := i + 1
	neg := j < len(p) && p[j] == '^'
	if neg {
		j++
	}
	match := false
	first := true
	for ; j < len(p); j++ {
		if p[j] == ']' && !first {
			return match != neg, j + 1
		}
		first = false
		lo := p[j]
		if lo == '\\' && j+1 < len(p) {
			j++
			lo = p[j]
		}
		hi := lo
		if j+2 < len(p) && p[j+1] == '-' && p[j+2] != ']' {
			hi = p[j+2]
			j += 2
			if lo > hi {
				lo, hi = hi, lo
			}
		}
		if c >= lo && c <= hi {
			match = true
		}
	}
	return c == '[', i + 1
}

// The replicated ACL: opACL commands change it, snapshots carry it.

// ACL command kinds (after opACL and the time).
const (
	aclSetUser = 1 // name, n (uvarint), rules (already hashed), m (uvarint), base rules for a user not yet defined
	aclDelUser = 2 // n (uvarint), names
)

func aclSetUserCmd(now int64, name string, rules, base []string) []byte {
	e := newCommand(opACL, now).uvarint(aclSetUser).bytes([]byte(name))
	for _, list := range [][]string{rules, base} {
		e.uvarint(uint64(len(list)))
		for _, r := range list {
			e.bytes([]byte(r))
		}
	}
	return e.b
}

func aclDelUserCmd(now int64, names []string) []byte {
	e := newCommand(opACL, now).uvarint(aclDelUser).uvarint(uint64(len(names)))
	for _, n := range names {
		e.bytes([]byte(n))
	}
	return e.b
}

// applyACL applies the rest of an opACL command. s.mu is held.
func (s *store) applyACL(d *decoder) ([]byte, error) {
	switch d.uvarint() {
	case aclSetUser:
		name := d.string()
		var lists [2][]string
		for i := range lists {
			n := d.uvarint()
			if n > maxRules {
				return nil, errMalformed
			}
			for range n {
				lists[i] = append(lists[i], d.string())
			}
		}
		if err := d.done(); err != nil {
			return nil, err
		}
		rules, base := lists[0], lists[1]
		old, exists := s.acl[name]
		if !exists && len(s.acl) >= maxUsers {
			return errReply("ERR too many users (at most %d)", maxUsers), nil
		}
		if !exists && len(base) > 0 {
			// The first change of the default user starts from the
			// implicit one the proposer had (its -requirepass, TLS).
			b, err := applyRules(name, nil, base)
			if err != nil {
				return errReply("ERR Error in ACL SETUSER base: %s", err), nil
			}
			old = b
		}
		u, err := applyRules(name, old, rules)
		if err != nil {
			return errReply("ERR Error in ACL SETUSER modifier: %s", strings.TrimPrefix(err.Error(), errACL.Error()+": ")), nil
		}
		if s.acl == nil {
			s.acl = make(map[string]*aclUser)
		}
		s.acl[name] = u
		return replyOK, nil
	case aclDelUser:
		n := d.uvarint()
		if n > maxUsers {
			return nil, errMalformed
		}
		names := make([]string, 0, min(n, 64))
		for range n {
			names = append(names, d.string())
		}
		if err := d.done(); err != nil {
			return nil, err
		}
		if slices.Contains(names, defaultUser) {
			return errReply("ERR The 'default' user cannot be removed"), nil
		}
		var deleted int64
		for _, name := range names {
			if _, ok := s.acl[name]; ok {
				delete(s.acl, name)
				deleted++
			}
		}
		return appendInt(nil, deleted), nil
	}
	if d.err != nil {
		return nil, d.err
	}
	return nil, fmt.Errorf("%w: unknown ACL command", errMalformed)
}

// appendUser encodes u for a snapshot: name, flags (bit 0 on, bit 1
// nopass), categories, passwords, key patterns.
func appendUser(b []byte, u *aclUser) []byte {
	b = appendString(b, []byte(u.name))
	var flags byte
	if u.on {
		flags |= 1
	}
	if u.nopass {
		flags |= 2
	}
	b = append(b, flags, u.cats)
	b = binary.AppendUvarint(b, uint64(len(u.passwords)))
	for _, p := range u.passwords {
		b = appendString(b, []byte(p))
	}
	b = binary.AppendUvarint(b, uint64(len(u.keys)))
	for _, k := range u.keys {
		b = appendString(b, []byte(k))
	}
	return b
}

func readUser(r *bufio.Reader) (*aclUser, error) {
	name, err := readString(r)
	if err != nil {
		return nil, err
	}
	if validUserName(string(name)) != nil {
		return nil, errMalformed
	}
	u := &aclUser{name: string(name)}
	flags, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	if u.cats, err = r.ReadByte(); err != nil {
		return nil, err
	}
	if flags&^3 != 0 || u.cats&^catAll != 0 {
		return nil, errMalformed
	}
	u.on, u.nopass = flags&1 != 0, flags&2 != 0
	list := func(check func(string) bool) ([]string, error) {
		n, err := binary.ReadUvarint(r)
		if err != nil || n > maxUserItems {
			return nil, errors.Join(errMalformed, err)
		}
		var out []string
		for range n {
			v, err := readString(r)
			if err != nil {
				return nil, err
			}
			if !check(string(v)) {
				return nil, errMalformed
			}
			out = append(out, string(v))
		}
		return out, nil
	}
	if u.passwords, err = list(func(h string) bool {
		return len(h) == passwordHexLen && strings.Trim(h, "0123456789abcdef") == ""
	}); err != nil {
		return nil, err
	}
	if !slices.IsSorted(u.passwords) {
		return nil, errMalformed
	}
	if u.keys, err = list(func(k string) bool { return len(k) < maxRuleLen }); err != nil {
		return nil, err
	}
	return u, nil
}
