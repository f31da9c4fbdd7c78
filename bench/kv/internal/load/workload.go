package load

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Op is one kind of request.
type Op int

// The operations a workload issues.
const (
	OpSet Op = iota
	OpGet
	numOps
)

// String returns the lower-case command name.
func (o Op) String() string {
	switch o {
	case OpSet:
		return "set"
	case OpGet:
		return "get"
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// KeySize is the length in bytes of every key: "key:" and 12 decimal digits.
const KeySize = 16

// MaxKeys is the largest key space KeySize bytes can name.
const MaxKeys = 1_000_000_000_000

// ErrBadMix reports a mix specification that cannot be parsed.
var ErrBadMix = errors.New("load: bad mix")

// Mix gives the relative weight of each operation.
type Mix struct {
	Set, Get int
}

// ParseMix parses "set=50,get=50"; a bare name means weight 100 ("get" is
// "get=100"). Weights are non-negative integers and at least one is positive.
func ParseMix(s string) (Mix, error) {
	var m Mix
	seen := map[string]bool{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		name, num, hasNum := strings.Cut(part, "=")
		name = strings.ToLower(strings.TrimSpace(name))
		w := 100
		if hasNum {
			n, err := strconv.Atoi(strings.TrimSpace(num))
			if err != nil || n < 0 {
				return Mix{}, fmt.Errorf("%w: weight %q of %q is not a non-negative integer", ErrBadMix, num, name)
			}
			w = n
		}
		if seen[name] {
			return Mix{}, fmt.Errorf("%w: %q given twice", ErrBadMix, name)
		}
		seen[name] = true
		switch name {
		case "set":
			m.Set = w
		case "get":
			m.Get = w
		default:
			return Mix{}, fmt.Errorf("%w: unknown operation %q (want set or get)", ErrBadMix, name)
		}
	}
	if m.Set+m.Get <= 0 {
		return Mix{}, fmt.Errorf("%w: %q has no positive weight", ErrBadMix, s)
	}
	return m, nil
}

// String returns the canonical form: "set" or "get" for a single operation,
// otherwise "set=W,get=W" with the weights reduced by their common divisor.
func (m Mix) String() string {
	switch {
	case m.Get == 0 && m.Set > 0:
		return "set"
	case m.Set == 0 && m.Get > 0:
		return "get"
	}
	g := gcd(m.Set, m.Get)
	if g == 0 {
		g = 1
	}
	return fmt.Sprintf("set=%d,get=%d", m.Set/g, m.Get/g)
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Workload describes what every client sends.
type Workload struct {
	Mix       Mix
	Keys      int    // size of the key space: keys 0..Keys-1, chosen uniformly
	ValueSize int    // bytes per SET value
	Seed      uint64 // seeds every client's generator
}

// Validate reports whether w can generate requests.
func (w Workload) Validate() error {
	if w.Mix.Set < 0 || w.Mix.Get < 0 || w.Mix.Set+w.Mix.Get <= 0 {
		return fmt.Errorf("%w: %+v", ErrBadMix, w.Mix)
	}
	if w.Keys < 1 || w.Keys > MaxKeys {
		return fmt.Errorf("load: key space %d out of range [1, %d]", w.Keys, MaxKeys)
	}
	if w.ValueSize < 0 {
		return fmt.Errorf("load: negative value size %d", w.ValueSize)
	}
	return nil
}

// Gen produces one client's request sequence. The sequence depends only on
// the Workload and the client number, so runs are reproducible.
type Gen struct {
	rng   *rand.Rand
	total int
	set   int
	keys  int
	key   [KeySize]byte
	value []byte
}

// NewGen returns the generator of client number client. w must be valid.
func (w Workload) NewGen(client int) *Gen {
	g := &Gen{
		rng:   rand.New(rand.NewPCG(w.Seed, uint64(client)+0x9e3779b97f4a7c15)),
		total: w.Mix.Set + w.Mix.Get,
		set:   w.Mix.Set,
		keys:  w.Keys,
	}
	g.value = Value(w.Seed, client, w.ValueSize)
	return g
}

// Next returns the next operation and its key index in [0, Keys).
func (g *Gen) Next() (Op, int) {
	op := OpGet
	if g.rng.IntN(g.total) < g.set {
		op = OpSet
	}
	return op, g.rng.IntN(g.keys)
}

// Key formats key index i into the generator's buffer and returns it. The
// slice is overwritten by the next call.
func (g *Gen) Key(i int) []byte {
	FormatKey(g.key[:], i)
	return g.key[:]
}

// Value returns the client's value, the same on every call.
func (g *Gen) Value() []byte { return g.value }

// FormatKey writes the KeySize-byte key of index i (0 <= i < MaxKeys) to dst,
// which must hold KeySize bytes: "key:000000000042" for 42.
func FormatKey(dst []byte, i int) {
	_ = dst[KeySize-1]
	copy(dst, "key:")
	for p := KeySize - 1; p >= 4; p-- {
		dst[p] = byte('0' + i%10)
		i /= 10
	}
}

// Key returns the key of index i as a string.
func Key(i int) string {
	var b [KeySize]byte
	FormatKey(b[:], i)
	return string(b[:])
}

// Value returns size printable bytes determined by seed and client.
func Value(seed uint64, client, size int) []byte {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	rng := rand.New(rand.NewPCG(seed^0x5bd1e995, uint64(client)))
	v := make([]byte, size)
	for i := range v {
		v[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return v
}
