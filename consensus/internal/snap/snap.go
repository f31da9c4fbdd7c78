package snap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// DefaultRetain is the default number of snapshot files kept.
const DefaultRetain = 2

// MaxMetadataBytes bounds the encoded snapshot metadata (mostly the
// ConfState) in a file header.
const MaxMetadataBytes = 16 << 20

// Errors returned by the store. Damaged files produce errors wrapping
// ErrCorrupt that name the file.
var (
	ErrCorrupt  = errors.New("snap: corrupt snapshot file")
	ErrNotFound = errors.New("snap: snapshot not found")
	ErrFinished = errors.New("snap: writer already committed or aborted")
	ErrInvalid  = errors.New("snap: invalid argument")
)

// Options configures a Store. The zero value means defaults.
type Options struct {
	// Retain is how many of the newest snapshot files Commit keeps; older
	// ones are deleted. Default DefaultRetain; must not be negative.
	Retain int
	// NoSync skips every fsync. Only for tests: nothing is durable.
	NoSync bool
	// Logger receives pruning and cleanup events. Nil is silent.
	Logger *slog.Logger
}

// File format, version 1 (little endian):
//
//	header:  "DKSNAP01" | version u32 | metadata length u32 | metadata (protobuf) | CRC32C of all before
//	data:    the snapshot bytes as streamed by the caller
//	trailer: data length u64 | CRC32C of data | CRC32C of the 12 bytes before | "DKSNPEND"
const (
	headMagic   = "DKSNAP01"
	tailMagic   = "DKSNPEND"
	version     = 1
	headFixed   = 16
	trailerSize = 24
	fileExt     = ".snap"
	tmpMarker   = ".snap.tmp"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Store keeps snapshot files in one directory. Its methods are safe for
// concurrent use. It starts no goroutines and holds no open files, so it
// needs no Close.
type Store struct {
	dir  string
	opts Options
	mu   sync.Mutex // serializes Commit's rename and pruning
	keep uint64     // index pruning never deletes (see Keep); guarded by mu
}

// Keep protects the snapshot at index from pruning, replacing the previous
// protected index. Call it with the index of the WAL's snapshot marker after
// opening and after every SetSnapshot: if a crash ever separates a Commit
// from the SetSnapshot that records it, pruning would otherwise be free to
// delete the one snapshot the WAL still points to.
func (s *Store) Keep(index uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keep = index
}

// Open opens the store in dir, creating dir if needed, and removes
// temporary files left by writers that never committed.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Retain < 0 {
		return nil, fmt.Errorf("snap: Retain %d is negative: %w", opts.Retain, ErrInvalid)
	}
	if opts.Retain == 0 {
		opts.Retain = DefaultRetain
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("snap: create dir: %w", err)
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("snap: read dir: %w", err)
	}
	for _, de := range des {
		if strings.Contains(de.Name(), tmpMarker) {
			if err := os.Remove(filepath.Join(dir, de.Name())); err != nil {
				return nil, fmt.Errorf("snap: remove leftover %s: %w", de.Name(), err)
			}
			opts.Logger.Info("snap: removed unfinished snapshot", "file", de.Name())
		}
	}
	return &Store{dir: dir, opts: opts}, nil
}

func fileName(index, term uint64) string { return fmt.Sprintf("%016x-%016x%s", index, term, fileExt) }

func parseName(name string) (index, term uint64, ok bool) {
	base, found := strings.CutSuffix(name, fileExt)
	if !found || len(base) != 33 || base[16] != '-' {
		return 0, 0, false
	}
	index, err1 := strconv.ParseUint(base[:16], 16, 64)
	term, err2 := strconv.ParseUint(base[17:], 16, 64)
	return index, term, err1 == nil && err2 == nil
}

type entry struct {
	index, term uint64
	name        string
}

// list returns the snapshot files, newest (highest index) first.
func (s *Store) list() ([]entry, error) {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("snap: read dir: %w", err)
	}
	var out []entry
	for _, de := range des {
		if index, term, ok := parseName(de.Name()); ok && de.Type().IsRegular() {
			out = append(out, entry{index, term, de.Name()})
		}
	}
	slices.SortFunc(out, func(a, b entry) int {
		if a.index != b.index {
			if a.index > b.index {
				return -1
			}
			return 1
		}
		return strings.Compare(b.name, a.name)
	})
	return out, nil
}

// Create starts a snapshot described by meta. The data is streamed through
// the returned Writer into a temporary file; nothing is visible until
// Commit. The caller must call Commit or Abort.
func (s *Store) Create(meta *raftpb.SnapshotMetadata) (*Writer, error) {
	if meta == nil {
		return nil, fmt.Errorf("snap: nil metadata: %w", ErrInvalid)
	}
	mb, err := proto.MarshalOptions{Deterministic: true}.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("snap: encode metadata: %w", err)
	}
	if len(mb) > MaxMetadataBytes {
		return nil, fmt.Errorf("snap: metadata of %d bytes exceeds %d: %w", len(mb), MaxMetadataBytes, ErrInvalid)
	}
	f, err := os.CreateTemp(s.dir, fileName(meta.GetIndex(), meta.GetTerm())+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("snap: create: %w", err)
	}
	head := make([]byte, 0, headFixed+len(mb)+4)
	head = append(head, headMagic...)
	head = binary.LittleEndian.AppendUint32(head, version)
	head = binary.LittleEndian.AppendUint32(head, uint32(len(mb)))
	head = append(head, mb...)
	head = binary.LittleEndian.AppendUint32(head, crc32.Checksum(head, castagnoli))
	w := &Writer{s: s, meta: proto.Clone(meta).(*raftpb.SnapshotMetadata), f: f, bw: bufio.NewWriterSize(f, 256<<10)}
	if _, err := w.bw.Write(head); err != nil {
		w.Abort()
		return nil, fmt.Errorf("snap: write header: %w", err)
	}
	return w, nil
}

// Writer streams one snapshot's data to a temporary file. It is not safe
// for concurrent use.
type Writer struct {
	s    *Store
	meta *raftpb.SnapshotMetadata
	f    *os.File
	bw   *bufio.Writer
	crc  uint32
	n    uint64
	done bool
	err  error // first write error
}

// Write appends p to the snapshot data.
func (w *Writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, ErrFinished
	}
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.bw.Write(p)
	w.crc = crc32.Update(w.crc, castagnoli, p[:n])
	w.n += uint64(n)
	if err != nil {
		w.err = fmt.Errorf("snap: write: %w", err)
		return n, w.err
	}
	return n, nil
}

// Commit writes the checksum trailer, syncs the file, renames it to its
// final name, syncs the directory and deletes snapshots beyond
// Options.Retain. After Commit the snapshot is durable and visible to
// Latest and Open.
func (w *Writer) Commit() error {
	if w.done {
		return ErrFinished
	}
	if w.err != nil {
		w.Abort()
		return w.err
	}
	tail := binary.LittleEndian.AppendUint64(make([]byte, 0, trailerSize), w.n)
	tail = binary.LittleEndian.AppendUint32(tail, w.crc)
	tail = binary.LittleEndian.AppendUint32(tail, crc32.Checksum(tail, castagnoli))
	tail = append(tail, tailMagic...)
	err := func() error {
		if _, err := w.bw.Write(tail); err != nil {
			return err
		}
		if err := w.bw.Flush(); err != nil {
			return err
		}
		if !w.s.opts.NoSync {
			if err := w.f.Sync(); err != nil {
				return err
			}
		}
		return w.f.Close()
	}()
	if err != nil {
		w.Abort()
		return fmt.Errorf("snap: commit: %w", err)
	}
	w.done = true
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	final := filepath.Join(s.dir, fileName(w.meta.GetIndex(), w.meta.GetTerm()))
	if err := os.Rename(w.f.Name(), final); err != nil {
		os.Remove(w.f.Name())
		return fmt.Errorf("snap: commit: %w", err)
	}
	if err := s.syncDir(); err != nil {
		return err
	}
	return s.prune()
}

// Abort discards the snapshot. It is a no-op after Commit.
func (w *Writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.f.Close()
	if err := os.Remove(w.f.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("snap: abort: %w", err)
	}
	return nil
}

func (s *Store) syncDir() error {
	if s.opts.NoSync {
		return nil
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("snap: open dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("snap: sync dir: %w", err)
	}
	return nil
}

// prune deletes all but the newest Retain snapshots and the one protected
// by Keep. Caller holds mu.
func (s *Store) prune() error {
	files, err := s.list()
	if err != nil {
		return err
	}
	if len(files) <= s.opts.Retain {
		return nil
	}
	for _, e := range files[s.opts.Retain:] {
		if e.index == s.keep {
			continue
		}
		if err := os.Remove(filepath.Join(s.dir, e.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("snap: prune: %w", err)
		}
		s.opts.Logger.Info("snap: removed old snapshot", "file", e.name)
	}
	return s.syncDir()
}

// Latest returns the metadata of the newest snapshot, or false if there is
// none. If the newest file's header is damaged it returns an error wrapping
// ErrCorrupt rather than falling back to an older snapshot; the data is
// checked when read (see Open and Verify).
func (s *Store) Latest() (*raftpb.SnapshotMetadata, bool, error) {
	files, err := s.list()
	if err != nil || len(files) == 0 {
		return nil, false, err
	}
	f, meta, _, err := s.openFile(files[0])
	if err != nil {
		return nil, false, err
	}
	f.Close()
	return meta, true, nil
}

// Open returns the metadata of the snapshot at index and a reader of its
// data. The reader checks the length and checksum as it goes: instead of
// io.EOF it returns an error wrapping ErrCorrupt if they do not match.
// A damaged header or trailer is reported by Open itself. The caller must
// close the reader.
func (s *Store) Open(index uint64) (*raftpb.SnapshotMetadata, io.ReadCloser, error) {
	files, err := s.list()
	if err != nil {
		return nil, nil, err
	}
	for _, e := range files {
		if e.index == index {
			f, meta, r, err := s.openFile(e)
			if err != nil {
				return nil, nil, err
			}
			return meta, &reader{f: f, r: r, want: r.wantCRC, name: e.name}, nil
		}
	}
	return nil, nil, fmt.Errorf("%w: index %d", ErrNotFound, index)
}

// Verify reads the whole snapshot at index and checks it.
func (s *Store) Verify(index uint64) error {
	_, rc, err := s.Open(index)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

type section struct {
	*io.SectionReader
	wantCRC uint32
}

// openFile validates the header and trailer of a snapshot file and returns
// the file, its metadata and a reader of its data section.
func (s *Store) openFile(e entry) (*os.File, *raftpb.SnapshotMetadata, section, error) {
	path := filepath.Join(s.dir, e.name)
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, section{}, fmt.Errorf("snap: open %s: %w", e.name, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, section{}, fmt.Errorf("snap: stat %s: %w", e.name, err)
	}
	meta, sec, err := parseFile(f, st.Size())
	if err != nil {
		f.Close()
		return nil, nil, section{}, fmt.Errorf("%w: %s: %v", ErrCorrupt, e.name, err)
	}
	if meta.GetIndex() != e.index || meta.GetTerm() != e.term {
		f.Close()
		return nil, nil, section{}, fmt.Errorf("%w: %s: holds index %d term %d", ErrCorrupt, e.name, meta.GetIndex(), meta.GetTerm())
	}
	return f, meta, sec, nil
}

// parseFile checks the header and trailer of a snapshot of size bytes.
func parseFile(r io.ReaderAt, size int64) (*raftpb.SnapshotMetadata, section, error) {
	if size < headFixed+4+trailerSize {
		return nil, section{}, fmt.Errorf("file of %d bytes is too short", size)
	}
	fixed := make([]byte, headFixed)
	if _, err := r.ReadAt(fixed, 0); err != nil {
		return nil, section{}, fmt.Errorf("read header: %v", err)
	}
	if string(fixed[:8]) != headMagic {
		return nil, section{}, fmt.Errorf("bad magic %q", fixed[:8])
	}
	if v := binary.LittleEndian.Uint32(fixed[8:12]); v != version {
		return nil, section{}, fmt.Errorf("unsupported version %d", v)
	}
	mlen := int64(binary.LittleEndian.Uint32(fixed[12:16]))
	if mlen > MaxMetadataBytes || headFixed+mlen+4+trailerSize > size {
		return nil, section{}, fmt.Errorf("metadata length %d does not fit a file of %d bytes", mlen, size)
	}
	head := make([]byte, headFixed+mlen+4)
	if _, err := r.ReadAt(head, 0); err != nil {
		return nil, section{}, fmt.Errorf("read header: %v", err)
	}
	if got, want := binary.LittleEndian.Uint32(head[headFixed+mlen:]), crc32.Checksum(head[:headFixed+mlen], castagnoli); got != want {
		return nil, section{}, fmt.Errorf("header checksum %08x, want %08x", got, want)
	}
	meta := &raftpb.SnapshotMetadata{}
	if err := proto.Unmarshal(head[headFixed:headFixed+mlen], meta); err != nil {
		return nil, section{}, fmt.Errorf("metadata: %v", err)
	}
	tail := make([]byte, trailerSize)
	if _, err := r.ReadAt(tail, size-trailerSize); err != nil {
		return nil, section{}, fmt.Errorf("read trailer: %v", err)
	}
	if string(tail[16:]) != tailMagic {
		return nil, section{}, errors.New("bad trailer magic (incomplete file?)")
	}
	if got, want := binary.LittleEndian.Uint32(tail[12:16]), crc32.Checksum(tail[:12], castagnoli); got != want {
		return nil, section{}, fmt.Errorf("trailer checksum %08x, want %08x", got, want)
	}
	start := int64(len(head))
	n := binary.LittleEndian.Uint64(tail[0:8])
	if n != uint64(size-trailerSize-start) {
		return nil, section{}, fmt.Errorf("data length %d, file holds %d", n, size-trailerSize-start)
	}
	return meta, section{io.NewSectionReader(r, start, int64(n)), binary.LittleEndian.Uint32(tail[8:12])}, nil
}

// reader yields snapshot data and checks its checksum at the end.
type reader struct {
	f    *os.File
	r    section
	crc  uint32
	want uint32
	name string
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.crc = crc32.Update(r.crc, castagnoli, p[:n])
	if err == io.EOF && r.crc != r.want {
		return n, fmt.Errorf("%w: %s: data checksum %08x, want %08x", ErrCorrupt, r.name, r.crc, r.want)
	}
	return n, err
}

func (r *reader) Close() error { return r.f.Close() }
