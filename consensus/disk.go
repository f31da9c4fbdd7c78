package consensus

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/distkit/distkit/consensus/internal/wal"
)

// openDisk opens the durable log (Dir/wal) and snapshot files (Dir/snap).
func openDisk(c Config) (logStore, snapStore, error) {
	ss, err := openSnapFiles(filepath.Join(c.Dir, "snap"))
	if err != nil {
		return nil, nil, err
	}
	l, err := wal.Open(filepath.Join(c.Dir, "wal"), wal.Options{
		MaxEntryBytes: c.MaxEntryBytes + entryHeaderLen + binary.MaxVarintLen64 + maxRequestIDLen,
		NoSync:        c.UnsafeNoSync,
		Logger:        c.Logger,
	})
	if err != nil {
		if errors.Is(err, wal.ErrCorrupt) {
			return nil, nil, fmt.Errorf("consensus: open log: %w: %w", err, ErrCorrupt)
		}
		return nil, nil, fmt.Errorf("consensus: open log: %w", err)
	}
	return diskLog{l}, ss, nil
}

// diskLog adapts *wal.Log to logStore: recording an older snapshot or
// compacting twice are no-ops for the node.
type diskLog struct{ *wal.Log }

func (d diskLog) SetSnapshot(meta *raftpb.SnapshotMetadata) error {
	if err := d.Log.SetSnapshot(meta); err != nil && !errors.Is(err, raft.ErrSnapOutOfDate) {
		return err
	}
	return nil
}

func (d diskLog) Compact(index uint64) error {
	if err := d.Log.Compact(index); err != nil && !errors.Is(err, raft.ErrCompacted) {
		return err
	}
	return nil
}

// snapFiles stores each snapshot as one file, written to a temporary name,
// synced, renamed and the directory synced, so a snapshot file either is
// complete or does not exist. Layout: magic, uvarint-prefixed metadata,
// data, then a CRC-32C of everything before it, verified when a reader
// reaches the end.
type snapFiles struct {
	dir string
}

var snapFileMagic = [8]byte{'d', 'k', 's', 'n', 'a', 'p', '0', '1'}

const (
	snapFileSuffix = ".snap"
	maxMetaLen     = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func openSnapFiles(dir string) (*snapFiles, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("consensus: snapshot dir: %w", err)
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("consensus: snapshot dir: %w", err)
	}
	for _, e := range names {
		if strings.HasSuffix(e.Name(), ".tmp") {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return &snapFiles{dir: dir}, nil
}

func (s *snapFiles) path(index uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%016x%s", index, snapFileSuffix))
}

func (s *snapFiles) Create(meta *raftpb.SnapshotMetadata) (snapWriter, error) {
	mb, err := proto.Marshal(meta)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(s.dir, fmt.Sprintf("%016x-*.tmp", meta.GetIndex()))
	if err != nil {
		return nil, fmt.Errorf("consensus: create snapshot: %w", err)
	}
	w := &snapFileWriter{s: s, f: f, index: meta.GetIndex(), crc: crc32.New(castagnoli)}
	w.bw = bufio.NewWriterSize(io.MultiWriter(f, w.crc), 256<<10)
	hdr := append(snapFileMagic[:], binary.AppendUvarint(nil, uint64(len(mb)))...)
	if _, err := w.bw.Write(append(hdr, mb...)); err != nil {
		w.Abort()
		return nil, err
	}
	return w, nil
}

type snapFileWriter struct {
	s     *snapFiles
	f     *os.File
	bw    *bufio.Writer
	crc   hash.Hash32
	index uint64
	done  bool
}

func (w *snapFileWriter) Write(p []byte) (int, error) { return w.bw.Write(p) }

func (w *snapFileWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	return os.Remove(w.f.Name())
}

func (w *snapFileWriter) Commit() (err error) {
	if w.done {
		return errors.New("consensus: snapshot writer already finished")
	}
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()
	if err := w.bw.Flush(); err != nil {
		return err
	}
	if _, err := w.f.Write(binary.LittleEndian.AppendUint32(nil, w.crc.Sum32())); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return err
	}
	if err := w.f.Close(); err != nil {
		return err
	}
	w.done = true
	if err := os.Rename(w.f.Name(), w.s.path(w.index)); err != nil {
		return err
	}
	return syncDir(w.s.dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Prune removes snapshot files older than index.
func (s *snapFiles) Prune(index uint64) {
	for _, i := range s.list() {
		if i < index {
			_ = os.Remove(s.path(i))
		}
	}
}

func (s *snapFiles) list() []uint64 {
	names, _ := os.ReadDir(s.dir)
	var idx []uint64
	for _, e := range names {
		n := e.Name()
		if !strings.HasSuffix(n, snapFileSuffix) {
			continue
		}
		if i, err := strconv.ParseUint(strings.TrimSuffix(n, snapFileSuffix), 16, 64); err == nil {
			idx = append(idx, i)
		}
	}
	slices.Sort(idx)
	return idx
}

func (s *snapFiles) Open(index uint64) (*raftpb.SnapshotMetadata, io.ReadCloser, error) {
	f, err := os.Open(s.path(index))
	if err != nil {
		return nil, nil, err
	}
	meta, rc, err := openSnapFile(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("consensus: snapshot %d: %w", index, err)
	}
	if meta.GetIndex() != index {
		rc.Close()
		return nil, nil, fmt.Errorf("consensus: snapshot file %d holds index %d: %w", index, meta.GetIndex(), ErrCorrupt)
	}
	return meta, rc, nil
}

// openSnapFile reads the header of a snapshot file and returns a reader of
// its data that checks the trailing checksum at the end.
func openSnapFile(f *os.File) (*raftpb.SnapshotMetadata, io.ReadCloser, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := st.Size()
	crc := crc32.New(castagnoli)
	br := bufio.NewReader(io.TeeReader(io.NewSectionReader(f, 0, size-4), crc))
	var magic [8]byte
	if _, err := io.ReadFull(br, magic[:]); err != nil || magic != snapFileMagic {
		return nil, nil, fmt.Errorf("bad magic: %w", ErrCorrupt)
	}
	ml, err := binary.ReadUvarint(br)
	if err != nil || ml > maxMetaLen || int64(ml) > size {
		return nil, nil, fmt.Errorf("bad metadata length: %w", ErrCorrupt)
	}
	mb := make([]byte, ml)
	if _, err := io.ReadFull(br, mb); err != nil {
		return nil, nil, fmt.Errorf("short metadata: %w", ErrCorrupt)
	}
	meta := &raftpb.SnapshotMetadata{}
	if err := proto.Unmarshal(mb, meta); err != nil {
		return nil, nil, fmt.Errorf("bad metadata: %v: %w", err, ErrCorrupt)
	}
	var want [4]byte
	if _, err := f.ReadAt(want[:], size-4); err != nil {
		return nil, nil, fmt.Errorf("missing checksum: %w", ErrCorrupt)
	}
	return meta, &snapFileReader{f: f, r: br, crc: crc, want: binary.LittleEndian.Uint32(want[:])}, nil
}

type snapFileReader struct {
	f    *os.File
	r    io.Reader
	crc  hash.Hash32
	want uint32
}

func (r *snapFileReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err == io.EOF && r.crc.Sum32() != r.want {
		return n, fmt.Errorf("consensus: snapshot checksum mismatch: %w", ErrCorrupt)
	}
	return n, err
}

func (r *snapFileReader) Close() error { return r.f.Close() }
