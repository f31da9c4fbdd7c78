package consensustest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"

	"github.com/distkit/distkit/consensus"
)

// KV is a small replicated key-value state machine for tests and examples.
// Commands are built with PutCommand and AppendCommand; Apply returns the
// key's new value as the result. Get reads the local copy.
type KV struct {
	mu      sync.RWMutex
	data    map[string]string
	applied uint64
}

// NewKV returns an empty KV.
func NewKV() *KV { return &KV{data: map[string]string{}} }

const (
	opPut    = 'p'
	opAppend = 'a'
)

// PutCommand encodes "set key to value".
func PutCommand(key, value string) []byte { return kvCommand(opPut, key, value) }

// AppendCommand encodes "append value to key".
func AppendCommand(key, value string) []byte { return kvCommand(opAppend, key, value) }

func kvCommand(op byte, key, value string) []byte {
	b := []byte{op}
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	return append(b, value...)
}

// ErrBadCommand is set as a command's error for undecodable commands.
var ErrBadCommand = errors.New("consensustest: bad KV command")

func decodeKV(b []byte) (op byte, key, value string, err error) {
	if len(b) < 2 || (b[0] != opPut && b[0] != opAppend) {
		return 0, "", "", ErrBadCommand
	}
	l, n := binary.Uvarint(b[1:])
	if n <= 0 || l > uint64(len(b)-1-n) {
		return 0, "", "", ErrBadCommand
	}
	k := b[1+n : 1+n+int(l)]
	return b[0], string(k), string(b[1+n+int(l):]), nil
}

// Apply implements consensus.StateMachine.
func (kv *KV) Apply(cmds []consensus.Command) error {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	for i := range cmds {
		c := &cmds[i]
		if c.Index <= kv.applied {
			return fmt.Errorf("consensustest: index %d applied twice (applied %d)", c.Index, kv.applied)
		}
		kv.applied = c.Index
		op, k, v, err := decodeKV(c.Data)
		if err != nil {
			c.Err = err
			continue
		}
		if op == opAppend {
			v = kv.data[k] + v
		}
		kv.data[k] = v
		c.Result = []byte(v)
	}
	return nil
}

// Get returns the local value of key.
func (kv *KV) Get(key string) (string, bool) {
	kv.mu.RLock()
	defer kv.mu.RUnlock()
	v, ok := kv.data[key]
	return v, ok
}

// Len returns the number of keys.
func (kv *KV) Len() int {
	kv.mu.RLock()
	defer kv.mu.RUnlock()
	return len(kv.data)
}

// Data returns a copy of the whole map.
func (kv *KV) Data() map[string]string {
	kv.mu.RLock()
	defer kv.mu.RUnlock()
	return maps.Clone(kv.data)
}

// Snapshot implements consensus.StateMachine with a copy of the map.
func (kv *KV) Snapshot() (consensus.SnapshotWriter, error) {
	kv.mu.RLock()
	defer kv.mu.RUnlock()
	return kvSnapshot{data: maps.Clone(kv.data), applied: kv.applied}, nil
}

type kvSnapshot struct {
	data    map[string]string
	applied uint64
}

func (s kvSnapshot) WriteTo(w io.Writer) (int64, error) {
	bw := bufio.NewWriter(w)
	var b []byte
	b = binary.AppendUvarint(b, s.applied)
	b = binary.AppendUvarint(b, uint64(len(s.data)))
	var total int64
	for _, k := range slices.Sorted(maps.Keys(s.data)) {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		v := s.data[k]
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
		if len(b) > 32<<10 {
			n, err := bw.Write(b)
			total += int64(n)
			if err != nil {
				return total, err
			}
			b = b[:0]
		}
	}
	n, err := bw.Write(b)
	total += int64(n)
	if err != nil {
		return total, err
	}
	return total, bw.Flush()
}

func (kvSnapshot) Release() {}

// Restore implements consensus.StateMachine.
func (kv *KV) Restore(r io.Reader) error {
	br := bufio.NewReader(r)
	applied, err := binary.ReadUvarint(br)
	if err != nil {
		return fmt.Errorf("consensustest: snapshot: %w", err)
	}
	n, err := binary.ReadUvarint(br)
	if err != nil || n > 1<<30 {
		return fmt.Errorf("consensustest: snapshot count: %v", err)
	}
	data := make(map[string]string, min(n, 1<<16))
	str := func() (string, error) {
		l, err := binary.ReadUvarint(br)
		if err != nil || l > 1<<30 {
			return "", fmt.Errorf("consensustest: snapshot string: %v", err)
		}
		b := make([]byte, l)
		_, err = io.ReadFull(br, b)
		return string(b), err
	}
	for range n {
		k, err := str()
		if err != nil {
			return err
		}
		v, err := str()
		if err != nil {
			return err
		}
		data[k] = v
	}
	kv.mu.Lock()
	kv.data, kv.applied = data, applied
	kv.mu.Unlock()
	return nil
}
