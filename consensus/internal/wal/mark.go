package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// The high-water mark records the last batch known to be durable, so that
// Open can tell a torn final write (a crash) from a log that lost synced
// batches (a truncated or zeroed file, a removed segment, an older copy of
// the directory put back).
//
// The file holds two 512-byte slots written alternately in place, each
// synced with one fdatasync; a torn slot fails its checksum and the other
// slot (the previous mark) is used. A slot:
//
//	[0:8]   magic "DKWALHWM"
//	[8:12]  version (1)
//	[12:16] zero
//	[16:24] generation: the slot with the higher one is the newer
//	[24:32] segment sequence number of the batch
//	[32:40] batch sequence number (0: no batch recorded yet)
//	[40:48] offset in the segment where the batch ends
//	[48:56] last log index after the batch (informational)
//	[56:60] chain value of the batch
//	[60:64] CRC32C of bytes [0:60]
//	[64:512] zero
const (
	markMagic    = "DKWALHWM"
	markVersion  = 1
	markSlotSize = 512
	markFileSize = 2 * markSlotSize
	markUsed     = 64

	// DefaultMarkInterval is the default Options.MarkInterval.
	DefaultMarkInterval = 50 * time.Millisecond
)

// markState names one durable batch.
type markState struct {
	seg   uint64
	batch uint64
	end   int64
	index uint64
	chain uint32
}

func encodeMarkSlot(m markState, gen uint64) []byte {
	b := make([]byte, markSlotSize)
	copy(b[0:8], markMagic)
	binary.LittleEndian.PutUint32(b[8:12], markVersion)
	binary.LittleEndian.PutUint64(b[16:24], gen)
	binary.LittleEndian.PutUint64(b[24:32], m.seg)
	binary.LittleEndian.PutUint64(b[32:40], m.batch)
	binary.LittleEndian.PutUint64(b[40:48], uint64(m.end))
	binary.LittleEndian.PutUint64(b[48:56], m.index)
	binary.LittleEndian.PutUint32(b[56:60], m.chain)
	binary.LittleEndian.PutUint32(b[60:64], crc32.Checksum(b[0:60], castagnoli))
	return b
}

// decodeMarkSlot decodes one slot. ok is false for an all-zero slot (never
// written).
func decodeMarkSlot(b []byte) (m markState, gen uint64, ok bool, err error) {
	if len(b) != markSlotSize {
		return m, 0, false, fmt.Errorf("slot of %d bytes", len(b))
	}
	if allZero(b) {
		return m, 0, false, nil
	}
	if string(b[0:8]) != markMagic {
		return m, 0, false, fmt.Errorf("bad magic %q", b[0:8])
	}
	if got, want := binary.LittleEndian.Uint32(b[60:64]), crc32.Checksum(b[0:60], castagnoli); got != want {
		return m, 0, false, fmt.Errorf("checksum %08x, want %08x", got, want)
	}
	if v := binary.LittleEndian.Uint32(b[8:12]); v != markVersion {
		return m, 0, false, fmt.Errorf("unsupported version %d", v)
	}
	if binary.LittleEndian.Uint32(b[12:16]) != 0 || !allZero(b[markUsed:]) {
		return m, 0, false, errors.New("reserved bytes not zero")
	}
	end := binary.LittleEndian.Uint64(b[40:48])
	if end > 1<<62 {
		return m, 0, false, fmt.Errorf("batch end %d", end)
	}
	m = markState{
		seg:   binary.LittleEndian.Uint64(b[24:32]),
		batch: binary.LittleEndian.Uint64(b[32:40]),
		end:   int64(end),
		index: binary.LittleEndian.Uint64(b[48:56]),
		chain: binary.LittleEndian.Uint32(b[56:60]),
	}
	return m, binary.LittleEndian.Uint64(b[16:24]), true, nil
}

// decodeMarkFile decodes the contents of a mark file. present is false for
// a file that was never completely written (empty or all zero: a crash
// while it was created). A slot that fails its checksum is a torn update
// and is ignored, as long as the other slot is valid.
func decodeMarkFile(b []byte) (m markState, gen uint64, present bool, err error) {
	if allZero(b) {
		return m, 0, false, nil
	}
	if len(b) > markFileSize {
		return m, 0, false, fmt.Errorf("%d bytes, want %d", len(b), markFileSize)
	}
	// A crash while the file was created may leave it short: what was not
	// written reads as zero.
	b = append(b[:len(b):len(b)], make([]byte, markFileSize-len(b))...)
	var errs []error
	for i := range 2 {
		sm, sg, ok, err := decodeMarkSlot(b[i*markSlotSize : (i+1)*markSlotSize])
		if err != nil {
			errs = append(errs, fmt.Errorf("slot %d: %w", i, err))
			continue
		}
		if ok && int(sg%2) != i {
			errs = append(errs, fmt.Errorf("slot %d holds generation %d", i, sg))
			continue
		}
		if ok && (!present || sg > gen) {
			m, gen, present = sm, sg, true
		}
	}
	if !present {
		return m, 0, false, fmt.Errorf("no valid slot: %w", errors.Join(errs...))
	}
	return m, gen, true, nil
}

// readMark reads the mark file without changing it.
func readMark(path string) (m markState, gen uint64, present bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return m, 0, false, nil
	}
	if err != nil {
		return m, 0, false, fmt.Errorf("wal: read high-water mark: %w", err)
	}
	m, gen, present, err = decodeMarkFile(b)
	if err != nil {
		return m, 0, false, fmt.Errorf("%w: high-water mark %s: %v", ErrCorrupt, path, err)
	}
	return m, gen, present, nil
}

// openMark opens the mark file for writing, creating it (synced, with its
// directory) if it was absent or never completely written. Caller holds
// wmu; replay's checks have passed.
func (l *Log) openMark(present bool, gen uint64) error {
	f, err := os.OpenFile(l.markPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("wal: open high-water mark: %w", err)
	}
	l.markFile, l.markGen = f, gen
	if present {
		return nil
	}
	b := append(encodeMarkSlot(l.markSaved, 0), make([]byte, markSlotSize)...)
	if _, err := f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("wal: write high-water mark: %w", err)
	}
	if err := f.Truncate(markFileSize); err != nil {
		return fmt.Errorf("wal: write high-water mark: %w", err)
	}
	if !l.opts.NoSync {
		if err := fdatasync(f); err != nil {
			return fmt.Errorf("wal: sync high-water mark: %w", err)
		}
		if err := syncDir(filepath.Dir(l.markPath)); err != nil {
			return err
		}
	}
	return nil
}

// saveMark records m as the high-water mark if it is newer than the last
// one saved: it overwrites the older slot and syncs. m must name a batch
// that is durable.
func (l *Log) saveMark(m markState) error {
	l.markMu.Lock()
	defer l.markMu.Unlock()
	// Never move back: the background goroutine may hold a state read
	// before a newer one was saved at a new segment.
	if l.markFile == nil || m.batch <= l.markSaved.batch {
		return nil
	}
	gen := l.markGen + 1
	if _, err := l.markFile.WriteAt(encodeMarkSlot(m, gen), int64(gen%2)*markSlotSize); err != nil {
		return fmt.Errorf("wal: write high-water mark: %w", err)
	}
	if !l.opts.NoSync {
		if err := fdatasync(l.markFile); err != nil {
			return fmt.Errorf("wal: sync high-water mark: %w", err)
		}
	}
	// Only a completed update moves to the other slot: after a failed one
	// the same slot is rewritten, so the previous mark stays intact.
	l.markGen, l.markSaved = gen, m
	return nil
}

// startMarker starts the goroutine that saves the high-water mark every
// Options.MarkInterval while batches are being synced.
func (l *Log) startMarker() {
	if l.opts.MarkInterval < 0 {
		return
	}
	stop, done := make(chan struct{}), make(chan struct{})
	l.markStop, l.markDone = stop, done
	go func() {
		defer close(done)
		t := time.NewTicker(l.opts.MarkInterval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			l.mu.RLock()
			m := l.durable
			l.mu.RUnlock()
			if err := l.saveMark(m); err != nil {
				l.opts.Logger.Error("wal: high-water mark not updated; loss of the latest batches would go unnoticed", "err", err)
			}
		}
	}()
}

// stopMarker stops the goroutine started by startMarker. Caller holds wmu.
func (l *Log) stopMarker() {
	if l.markStop == nil {
		return
	}
	close(l.markStop)
	<-l.markDone
	l.markStop, l.markDone = nil, nil
}
