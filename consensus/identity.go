package consensus

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"

	"go.etcd.io/raft/v3/raftpb"
)

// A member's identity is the group its state belongs to and a random
// incarnation number created together with that state. The identity file
// lives beside the log (Dir/identity); a MemoryStore keeps it in memory.
//
// Every message a member sends carries its incarnation, and the group
// records each member id's incarnation in its replicated state the first
// time the member announces it. A member that comes back with empty or
// someone else's state has a different incarnation, so the group refuses
// its messages: it can never again vote or acknowledge entries under an id
// whose history it has forgotten.

// identity is a member's persisted identity.
type identity struct {
	group       uint64
	incarnation uint64
}

// Identity file layout (version 1), little-endian: magic "dkid", version
// byte 1, group uint64, incarnation uint64, CRC-32C of the preceding bytes.
const (
	identityFile    = "identity"
	identityLen     = 4 + 1 + 8 + 8 + 4
	identityVersion = 1
)

var (
	identityMagic = [4]byte{'d', 'k', 'i', 'd'}
	castagnoli    = crc32.MakeTable(crc32.Castagnoli)
)

func encodeIdentity(id identity) []byte {
	b := append([]byte(nil), identityMagic[:]...)
	b = append(b, identityVersion)
	b = binary.LittleEndian.AppendUint64(b, id.group)
	b = binary.LittleEndian.AppendUint64(b, id.incarnation)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeIdentity(b []byte) (identity, error) {
	if len(b) != identityLen {
		return identity{}, fmt.Errorf("%w: identity of %d bytes", errMalformed, len(b))
	}
	if [4]byte(b[:4]) != identityMagic || b[4] != identityVersion {
		return identity{}, fmt.Errorf("%w: identity header %q", errMalformed, b[:5])
	}
	if got, want := binary.LittleEndian.Uint32(b[21:]), crc32.Checksum(b[:21], castagnoli); got != want {
		return identity{}, fmt.Errorf("%w: identity checksum %#x, want %#x", errMalformed, got, want)
	}
	id := identity{group: binary.LittleEndian.Uint64(b[5:]), incarnation: binary.LittleEndian.Uint64(b[13:])}
	if id.incarnation == 0 {
		return identity{}, fmt.Errorf("%w: incarnation 0", errMalformed)
	}
	return id, nil
}

// newIncarnation returns a random non-zero incarnation.
func newIncarnation() uint64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:])
		if v := binary.LittleEndian.Uint64(b[:]); v != 0 {
			return v
		}
	}
}

// openIdentity reads Dir/identity, creating it when absent: for a new
// directory, and for one written by an earlier release (which had no
// identity file), whose state then takes a new incarnation. A directory of
// another group is refused.
func openIdentity(c Config) (identity, error) {
	path := filepath.Join(c.Dir, identityFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		id, err := decodeIdentity(b)
		if err != nil {
			return identity{}, fmt.Errorf("consensus: %s: %w: %w", path, err, ErrCorrupt)
		}
		if id.group != c.GroupID {
			return identity{}, fmt.Errorf("consensus: %s holds state of group %d, not %d (Config.GroupID): %w",
				c.Dir, id.group, c.GroupID, ErrWrongGroup)
		}
		return id, nil
	case !errors.Is(err, fs.ErrNotExist):
		return identity{}, fmt.Errorf("consensus: read identity: %w", err)
	}
	existing := false
	for _, sub := range []string{"wal", "snap"} {
		if _, err := os.Stat(filepath.Join(c.Dir, sub)); err == nil {
			existing = true
		}
	}
	id := identity{group: c.GroupID, incarnation: newIncarnation()}
	if err := writeIdentity(c.Dir, id, c.UnsafeNoSync); err != nil {
		return identity{}, err
	}
	if existing && c.Logger != nil {
		c.Logger.Info("consensus: created an identity for a data directory of an earlier release",
			"dir", c.Dir, "group", id.group, "incarnation", id.incarnation)
	}
	return id, nil
}

// writeIdentity writes the identity file atomically and durably.
func writeIdentity(dir string, id identity, noSync bool) error {
	wrap := func(err error) error { return fmt.Errorf("consensus: write identity: %w", err) }
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return wrap(err)
	}
	tmp := filepath.Join(dir, identityFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return wrap(err)
	}
	_, err = f.Write(encodeIdentity(id))
	if err == nil && !noSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, identityFile))
	}
	if err == nil && !noSync {
		var d *os.File
		if d, err = os.Open(dir); err == nil {
			err = d.Sync()
			d.Close()
		}
	}
	if err != nil {
		os.Remove(tmp)
		return wrap(err)
	}
	return nil
}

// memoryIdentity returns the MemoryStore's identity, creating it on the
// store's first start.
func (s *MemoryStore) identity(group uint64) (identity, error) {
	s.idMu.Lock()
	defer s.idMu.Unlock()
	if s.ident == nil {
		s.ident = &identity{group: group, incarnation: newIncarnation()}
	}
	if s.ident.group != group {
		return identity{}, fmt.Errorf("consensus: MemoryStore holds state of group %d, not %d (Config.GroupID): %w",
			s.ident.group, group, ErrWrongGroup)
	}
	return *s.ident, nil
}

// incarnations returns the registry as last published by the apply loop.
func (n *Node) incarnations() map[uint64]uint64 {
	if p := n.incs.Load(); p != nil {
		return *p
	}
	return nil
}

// publishIncarnations makes reg the registry the message checks use. It
// returns an error wrapping ErrDataLoss if the group knows this member's id
// under another incarnation: its state is not the state the group knows it
// by.
func (n *Node) publishIncarnations(reg map[uint64]uint64) error {
	n.incs.Store(&reg)
	if inc, ok := reg[n.id]; ok && inc != n.inc {
		return fmt.Errorf("%w: %w: the group knows member %d as incarnation %d, but this state is incarnation %d: "+
			"it was lost or replaced; remove member %d and add it back under a new id with an empty directory",
			ErrDataLoss, ErrCorrupt, n.id, inc, n.inc, n.id)
	}
	return nil
}

// applyIncarnation records a member's announced incarnation (apply loop).
// The first announcement for an id wins; later ones (a member that lost its
// state, announcing a new incarnation) change nothing.
func (n *Node) applyIncarnation(ap *applyState, body []byte) {
	id, inc, err := decodeIncarnationBody(body)
	if err != nil {
		n.log.Warn("consensus: ignoring a malformed incarnation entry", "err", err)
		return
	}
	if _, ok := ap.rs.incarnations[id]; ok {
		return
	}
	reg := make(map[uint64]uint64, len(ap.rs.incarnations)+1)
	for k, v := range ap.rs.incarnations {
		reg[k] = v
	}
	reg[id] = inc
	ap.rs.incarnations = reg
	if err := n.publishIncarnations(reg); err != nil {
		n.fail(err)
	}
}

// announceIncarnation proposes this member's incarnation to the group if
// the group has not recorded it yet and this member is part of it (raft
// goroutine). Repeated announcements are harmless.
func (n *Node) announceIncarnation() {
	if _, ok := n.incarnations()[n.id]; ok {
		return
	}
	if _, member := n.addrs[n.id]; !member || n.removed.Load() || n.rn.BasicStatus().Lead == 0 {
		return
	}
	ent := &raftpb.Entry{Data: encodeIncarnationEntry(n.id, n.inc)}
	// A refusal (no leader after all, say) is retried on a later tick.
	_ = n.rn.Step(&raftpb.Message{Type: raftpb.MsgProp.Enum(), From: new(n.id), Entries: []*raftpb.Entry{ent}})
}
