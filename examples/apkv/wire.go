package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/quorum"
)

// ContextHeader carries a key's causal context: returned by GET, PUT and
// DELETE, and accepted by PUT and DELETE so a write replaces what the client
// read. Its value is the base64url (unpadded) binary encoding of a
// clock.Vector.
const ContextHeader = "X-Causal-Context"

// fromHeader names the node making an internal replica call.
const fromHeader = "X-Apkv-From"

// maxBody bounds every request and response body.
const maxBody = 1 << 20

var errBadContext = errors.New("apkv: malformed causal context")

func encodeContext(v clock.Vector) (string, error) {
	b, err := v.MarshalBinary()
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// decodeContext parses a ContextHeader value; the empty string is the empty
// context (a blind write).
func decodeContext(s string) (clock.Vector, error) {
	var v clock.Vector
	if s == "" {
		return v, nil
	}
	if len(s) > maxBody {
		return v, fmt.Errorf("%w: too long", errBadContext)
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return v, fmt.Errorf("%w: %v", errBadContext, err)
	}
	if err := v.UnmarshalBinary(b); err != nil {
		return v, fmt.Errorf("%w: %v", errBadContext, err)
	}
	return v, nil
}

// decodeObject parses an object sent by a peer and checks its invariants.
func decodeObject(b []byte) (quorum.Object[string], error) {
	var o quorum.Object[string]
	if err := json.Unmarshal(b, &o); err != nil {
		return quorum.Object[string]{}, fmt.Errorf("apkv: object: %w", err)
	}
	if err := o.Validate(); err != nil {
		return quorum.Object[string]{}, err
	}
	return o, nil
}

// decodeWrite parses a write forwarded by a coordinating peer.
func decodeWrite(b []byte) (quorum.Write[string], error) {
	var w quorum.Write[string]
	if err := json.Unmarshal(b, &w); err != nil {
		return quorum.Write[string]{}, fmt.Errorf("apkv: write: %w", err)
	}
	return w, nil
}

func readBody(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxBody {
		return nil, fmt.Errorf("apkv: body larger than %d bytes", maxBody)
	}
	return b, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
