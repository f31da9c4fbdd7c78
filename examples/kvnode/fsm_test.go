package main

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/distkit/distkit/consensus"
	"pgregory.net/rapid"
)

// tb is what the helpers need of testing.TB and *rapid.T.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
	Fatal(args ...any)
}

func applyOne(t tb, s *store, cmd []byte) string {
	t.Helper()
	cmds := []consensus.Command{{Index: 1, Data: cmd}}
	if err := s.Apply(cmds); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return string(cmds[0].Result)
}

func setCmd(now int64, k, v string, flags uint64, exp int64) []byte {
	return newCommand(opSet, now).bytes([]byte(k)).bytes([]byte(v)).uvarint(flags).varint(exp).b
}

func getVal(s *store, k string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	it, ok := s.get(k)
	return string(it.val), ok
}

func TestStoreApply(t *testing.T) {
	type step struct {
		cmd  []byte
		want string
	}
	tests := []struct {
		name  string
		steps []step
		key   string
		val   string
		found bool
	}{
		{"set then overwrite", []step{
			{setCmd(1, "a", "1", 0, 0), "+OK\r\n"},
			{setCmd(2, "a", "2", 0, 0), "+OK\r\n"},
		}, "a", "2", true},
		{"nx keeps the first", []step{
			{setCmd(1, "a", "1", setNX, 0), "+OK\r\n"},
			{setCmd(2, "a", "2", setNX, 0), "$-1\r\n"},
		}, "a", "1", true},
		{"xx needs an existing key", []step{
			{setCmd(1, "a", "1", setXX, 0), "$-1\r\n"},
		}, "a", "", false},
		{"get returns the old value", []step{
			{setCmd(1, "a", "1", 0, 0), "+OK\r\n"},
			{setCmd(2, "a", "2", setGet, 0), "$1\r\n1\r\n"},
		}, "a", "2", true},
		{"expiry follows the replicated clock", []step{
			{setCmd(1000, "a", "1", 0, 1500), "+OK\r\n"},
			{newCommand(opTick, 1499).b, "+OK\r\n"},
		}, "a", "1", true},
		{"expired once the clock passes", []step{
			{setCmd(1000, "a", "1", 0, 1500), "+OK\r\n"},
			{newCommand(opTick, 1500).b, "+OK\r\n"},
		}, "a", "", false},
		{"clock never goes back", []step{
			{newCommand(opTick, 2000).b, "+OK\r\n"},
			{setCmd(1000, "a", "1", 0, 1500), "+OK\r\n"}, // proposer clock behind: already expired
		}, "a", "", false},
		{"incr from nothing", []step{
			{newCommand(opIncrBy, 1).bytes([]byte("n")).varint(5).b, ":5\r\n"},
			{newCommand(opIncrBy, 1).bytes([]byte("n")).varint(-7).b, ":-2\r\n"},
		}, "n", "-2", true},
		{"incr of a non-number", []step{
			{setCmd(1, "n", "x", 0, 0), "+OK\r\n"},
			{newCommand(opIncrBy, 1).bytes([]byte("n")).varint(1).b, string(errNotInteger)},
		}, "n", "x", true},
		{"incr overflow", []step{
			{setCmd(1, "n", strconv.FormatInt(1<<63-1, 10), 0, 0), "+OK\r\n"},
			{newCommand(opIncrBy, 1).bytes([]byte("n")).varint(1).b, string(errIncrOverflow)},
		}, "n", strconv.FormatInt(1<<63-1, 10), true},
		{"append", []step{
			{newCommand(opAppend, 1).bytes([]byte("a")).bytes([]byte("xy")).b, ":2\r\n"},
			{newCommand(opAppend, 1).bytes([]byte("a")).bytes([]byte("z")).b, ":3\r\n"},
		}, "a", "xyz", true},
		{"del counts live keys", []step{
			{setCmd(1, "a", "1", 0, 0), "+OK\r\n"},
			{newCommand(opDel, 1).uvarint(2).bytes([]byte("a")).bytes([]byte("b")).b, ":1\r\n"},
		}, "a", "", false},
		{"mset", []step{
			{newCommand(opMSet, 1).uvarint(2).bytes([]byte("a")).bytes([]byte("1")).bytes([]byte("b")).bytes([]byte("2")).b, "+OK\r\n"},
		}, "b", "2", true},
		{"batch applies in order and concatenates replies", []step{
			{newCommand(opBatch, 1).uvarint(3).
				bytes(setCmd(1, "a", "x", 0, 0)).
				bytes(newCommand(opAppend, 1).bytes([]byte("a")).bytes([]byte("y")).b).
				bytes(newCommand(opIncrBy, 1).bytes([]byte("a")).varint(1).b).b,
				"+OK\r\n:2\r\n" + string(errNotInteger)},
		}, "a", "xy", true},
		{"batch: a bad member gets an error reply, the rest apply", []step{
			{newCommand(opBatch, 1).uvarint(3).
				bytes([]byte{opBatch}).
				bytes([]byte{1, 2}).
				bytes(setCmd(1, "a", "z", 0, 0)).b,
				"-ERR kvnode: malformed command: nested batch\r\n-ERR kvnode: malformed command\r\n+OK\r\n"},
		}, "a", "z", true},
		{"batch with broken framing applies nothing", []step{
			{newCommand(opBatch, 1).uvarint(2).bytes(setCmd(1, "a", "z", 0, 0)).b, "-ERR kvnode: malformed command\r\n"},
		}, "a", "", false},
		{"malformed command is refused, not fatal", []step{
			{[]byte{opSet, 0, 0}, "-ERR kvnode: malformed command\r\n"},
			{[]byte{99, 0, 0, 0, 0, 0, 0, 0, 0}, "-ERR kvnode: malformed command: unknown op 99\r\n"},
			{append(setCmd(1, "a", "1", 0, 0), 0), "-ERR kvnode: malformed command\r\n"},
		}, "a", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore()
			for i, st := range tt.steps {
				if got := applyOne(t, s, st.cmd); got != st.want {
					t.Fatalf("step %d: reply %q, want %q", i, got, st.want)
				}
			}
			v, ok := getVal(s, tt.key)
			if ok != tt.found || v != tt.val {
				t.Fatalf("%s = %q, %v; want %q, %v", tt.key, v, ok, tt.val, tt.found)
			}
		})
	}
}

func snapshotBytes(t tb, s *store) []byte {
	t.Helper()
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Release()
	var buf bytes.Buffer
	if _, err := sn.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestStoreDeterministic: members applying the same commands, in batches
// of any size and with a snapshot restore anywhere, reach byte-identical
// states and return identical replies.
func TestStoreDeterministic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		keys := []string{"a", "b", "c"}
		genCmd := rapid.Custom(func(t *rapid.T) []byte {
			now := rapid.Int64Range(0, 100).Draw(t, "now")
			k := []byte(rapid.SampledFrom(keys).Draw(t, "key"))
			switch rapid.IntRange(0, 6).Draw(t, "op") {
			case 0:
				exp := rapid.SampledFrom([]int64{0, 0, 50, 120}).Draw(t, "exp")
				return setCmd(now, string(k), rapid.StringN(0, 4, 4).Draw(t, "v"), uint64(rapid.IntRange(0, 15).Draw(t, "flags")), exp)
			case 1:
				return newCommand(opDel, now).uvarint(1).bytes(k).b
			case 2:
				return newCommand(opIncrBy, now).bytes(k).varint(rapid.Int64Range(-3, 3).Draw(t, "d")).b
			case 3:
				return newCommand(opAppend, now).bytes(k).bytes([]byte(rapid.StringN(0, 3, 3).Draw(t, "v"))).b
			case 4:
				return newCommand(opTick, now).b
			case 5:
				return newCommand(opBatch, now).uvarint(2).
					bytes(setCmd(now, string(k), "b", 0, rapid.SampledFrom([]int64{0, 60}).Draw(t, "bexp"))).
					bytes(newCommand(opAppend, now).bytes(k).bytes([]byte("c")).b).b
			default:
				return rapid.SliceOfN(rapid.Byte(), 0, 12).Draw(t, "garbage")
			}
		})
		cmds := rapid.SliceOfN(genCmd, 1, 60).Draw(t, "cmds")
		cut := rapid.IntRange(0, len(cmds)).Draw(t, "restoreAt")

		a := newStore()
		var repliesA []string
		for _, c := range cmds {
			repliesA = append(repliesA, applyOne(t, a, c))
		}
		b := newStore()
		var repliesB []string
		batch := []consensus.Command{}
		flush := func() {
			if err := b.Apply(batch); err != nil {
				t.Fatal(err)
			}
			for _, c := range batch {
				repliesB = append(repliesB, string(c.Result))
			}
			batch = batch[:0]
		}
		for i, c := range cmds {
			if i == cut {
				flush()
				restored := newStore()
				if err := restored.Restore(bytes.NewReader(snapshotBytes(t, b))); err != nil {
					t.Fatalf("Restore: %v", err)
				}
				b = restored
			}
			batch = append(batch, consensus.Command{Data: c})
			if rapid.Bool().Draw(t, "flush") {
				flush()
			}
		}
		flush()
		if !bytes.Equal(snapshotBytes(t, a), snapshotBytes(t, b)) {
			t.Fatal("states differ")
		}
		for i := range repliesA {
			if repliesA[i] != repliesB[i] {
				t.Fatalf("reply %d: %q vs %q", i, repliesA[i], repliesB[i])
			}
		}
		if a.expiring != b.expiring {
			t.Fatalf("expiring counts differ: %d vs %d", a.expiring, b.expiring)
		}
	})
}

func TestRestoreRejectsMalformed(t *testing.T) {
	s := newStore()
	applyOne(t, s, setCmd(1, "a", "hello", 0, 0))
	good := snapshotBytes(t, s)
	tests := map[string][]byte{
		"empty":        nil,
		"bad magic":    append([]byte("XXXX"), good[4:]...),
		"truncated":    good[:len(good)-2],
		"trailing":     append(append([]byte{}, good...), 0),
		"huge string":  append(append([]byte{}, good[:13]...), 0xff, 0xff, 0xff, 0xff, 0x7f),
		"huge members": append(append([]byte{}, good[:12]...), 0xff, 0xff, 0xff, 0x7f),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			if err := newStore().Restore(bytes.NewReader(b)); err == nil {
				t.Fatal("Restore accepted a malformed snapshot")
			}
		})
	}
}

func FuzzApply(f *testing.F) {
	f.Add(setCmd(1, "a", "1", setNX, 10))
	f.Add(newCommand(opDel, 1).uvarint(2).bytes([]byte("a")).bytes([]byte("b")).b)
	f.Add(newCommand(opMSet, 1).uvarint(1).bytes([]byte("a")).bytes([]byte("1")).b)
	f.Add(newCommand(opMeta, 1).uvarint(1).bytes([]byte("r")).bytes([]byte("h")).b)
	f.Add([]byte{opDel, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x0f})
	f.Add(newCommand(opBatch, 1).uvarint(2).bytes(setCmd(1, "a", "1", 0, 0)).bytes([]byte{opTick}).b)
	f.Add(aclSetUserCmd(1, "alice", []string{"on", "#" + hashPassword("pw"), "~app:*", "+@read"}, []string{"on"}))
	f.Add(aclDelUserCmd(1, []string{"alice", "default"}))
	f.Add(newCommand(opIdem, 1).bytes([]byte("fp")).bytes(setCmd(1, "a", "1", 0, 0)).b)
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newStore()
		res := applyOne(t, s, data)
		if res == "" {
			t.Fatal("empty reply")
		}
		// The state stays snapshottable and restorable.
		if err := newStore().Restore(bytes.NewReader(snapshotBytes(t, s))); err != nil {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzRestore(f *testing.F) {
	s := newStore()
	applyOne(f, s, setCmd(1, "a", "hello", 0, 99))
	applyOne(f, s, newCommand(opMeta, 1).uvarint(1).bytes([]byte("r")).bytes([]byte("h")).b)
	f.Add(snapshotBytes(f, s))
	applyOne(f, s, aclSetUserCmd(1, "alice", []string{"on", ">pw", "~app:*", "+@read"}, nil))
	f.Add(snapshotBytes(f, s))
	f.Add([]byte("KVS1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		data2, now, meta, acl, err := decodeSnapshot(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		re := &store{data: data2, now: now, meta: meta, acl: acl}
		again := snapshotBytes(t, re)
		if _, _, _, _, err := decodeSnapshot(bufio.NewReader(bytes.NewReader(again))); err != nil {
			t.Fatalf("re-encoded snapshot does not decode: %v", err)
		}
	})
}

// FuzzRESPCommand feeds raw client bytes through the RESP parser, the
// command validation and encoding, and the state machine: no input may
// panic, and every write either is refused with an error reply or applies.
func FuzzRESPCommand(f *testing.F) {
	f.Add([]byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"))
	f.Add([]byte("*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nEX\r\n$2\r\n10\r\n"))
	f.Add([]byte("*3\r\n$6\r\nINCRBY\r\n$1\r\nk\r\n$20\r\n-9223372036854775808\r\n"))
	f.Add([]byte("*5\r\n$4\r\nMSET\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n"))
	f.Add([]byte("DEL a b c\r\nAPPEND k xyz\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cmds, err := parseRESP(data, defaultMaxRequest)
		if err != nil {
			return
		}
		m := &member{cfg: memberConfig{Limits: limits{MaxValue: 1 << 10}}}
		s := newStore()
		for _, args := range cmds {
			name := strings.ToLower(string(args[0]))
			if !isWrite(name) {
				continue
			}
			cmd, errRep := m.buildWrite(name, args)
			if errRep != nil {
				if !bytes.HasPrefix(errRep, []byte("-")) {
					t.Fatalf("refusal %q is not an error reply", errRep)
				}
				continue
			}
			if res := applyOne(t, s, cmd); strings.HasPrefix(res, "-ERR kvnode: malformed") {
				t.Fatalf("%s: validated command does not decode: %s", name, res)
			}
		}
	})
}
