package main

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/idempotency"
)

// IDEMPOTENT <key> <write...> and the HTTP Idempotency-Key header.
//
// The consensus group remembers the result of each request id in its
// replicated dedup window and returns it to any retry with that id. Two
// things make that safe to expose to clients:
//
//   - Keys are scoped per user: the request id names the authenticated
//     user, so one user cannot replay or pre-claim another's key.
//   - The command is fingerprinted: an idempotent write is proposed as
//     opIdem(fingerprint, write), whose result carries the fingerprint. A
//     retry whose fingerprint differs from the recorded one gets an error
//     instead of the first command's reply; the dedup window answered it,
//     so nothing was applied.

// idemMarker starts the result of an opIdem command; RESP replies never
// start with it.
const idemMarker = 0

// maxGroupRequestID is the consensus group's bound on a request id.
const maxGroupRequestID = 1024

// errKeyReused is the reply to an idempotency key reused with another
// command (HTTP: 422).
var errKeyReused = []byte("-ERR idempotency key reused with a different command; nothing was applied (use a new key for a new command)\r\n")

// commandFingerprint identifies a client's command: its name (any case)
// and arguments, before the proposer adds its clock. A retry sends the
// same arguments, so it has the same fingerprint.
func commandFingerprint(args [][]byte) []byte {
	parts := make([][]byte, len(args))
	copy(parts, args)
	parts[0] = bytes.ToLower(args[0])
	return idempotency.Fingerprint(parts...)
}

// requestID scopes a client's idempotency key to its user. The default
// user keeps the unscoped form, so records made before users existed
// still match.
func requestID(user, key string) string {
	if user == "" || user == defaultUser {
		return "kv:" + key
	}
	return "kvu:" + user + "\x00" + key
}

// idempotentWrite proposes the write cmd (built from args) under the
// user's key and returns its reply, the first reply of an earlier attempt
// with the same command, or errKeyReused.
func (m *member) idempotentWrite(user string, args [][]byte, cmd []byte, key string) []byte {
	id := requestID(user, key)
	if len(id) > maxGroupRequestID {
		return errReply("ERR idempotency key too long for user '%s'", user)
	}
	fp := commandFingerprint(args)
	wrapped := newCommand(opIdem, m.nowMs()).bytes(fp).bytes(cmd).b
	res, err := m.propose(wrapped, id)
	if err != nil {
		return proposeError(err)
	}
	return unwrapIdem(res, fp)
}

// unwrapIdem checks the fingerprint recorded in an opIdem result.
func unwrapIdem(res, fp []byte) []byte {
	if len(res) == 0 || res[0] != idemMarker {
		return res // recorded before fingerprints, or a decoding error
	}
	d := decoder{b: res[1:]}
	got := d.bytes()
	if d.err != nil {
		return errReply("ERR malformed idempotency record")
	}
	if !bytes.Equal(got, fp) {
		return errKeyReused
	}
	return d.b
}

// applyIdem applies the rest of an opIdem command. s.mu is held.
func (s *store) applyIdem(d *decoder, ts clock.Timestamp) ([]byte, error) {
	fp, inner := d.bytes(), d.bytes()
	if err := d.done(); err != nil {
		return nil, err
	}
	if len(inner) == 0 {
		return nil, errMalformed
	}
	switch inner[0] {
	case opSet, opDel, opIncrBy, opAppend, opMSet:
	default:
		return nil, fmt.Errorf("%w: op %d in an idempotent command", errMalformed, inner[0])
	}
	res, err := s.apply(inner, ts)
	if err != nil {
		res = []byte("-ERR " + strings.ReplaceAll(err.Error(), "\r\n", " ") + "\r\n")
	}
	out := make([]byte, 0, 1+1+len(fp)+len(res))
	out = append(out, idemMarker)
	out = appendString(out, fp)
	return append(out, res...), nil
}
