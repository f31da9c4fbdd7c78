package wal

import (
	"errors"
	"fmt"
	"os"
)

// preparer is the one goroutine a Log starts: it keeps an empty,
// preallocated and synced file ready for the next segment, so a rollover
// does not allocate space on the writing goroutine. It is started by Open
// and stopped by Close.
type preparer struct {
	ready chan preparedFile // unbuffered: at most one prepared file exists
	stop  chan struct{}
	done  chan struct{}
}

type preparedFile struct {
	f    *os.File
	path string
	size int64 // the preallocated size, 0 if the file system does not preallocate
	err  error
}

func (p preparedFile) discard() {
	if p.f != nil {
		p.f.Close()
		os.Remove(p.path)
	}
}

func (l *Log) startPreparer() {
	p := &preparer{ready: make(chan preparedFile), stop: make(chan struct{}), done: make(chan struct{})}
	l.prep = p
	go func() {
		defer close(p.done)
		for {
			pf := l.prepareFile()
			select {
			case p.ready <- pf:
			case <-p.stop:
				pf.discard()
				return
			}
		}
	}()
}

// stopPreparer stops the goroutine and removes an unused prepared file.
func (l *Log) stopPreparer() {
	if l.prep == nil {
		return
	}
	close(l.prep.stop)
	<-l.prep.done
	l.prep = nil
}

// prepareFile creates a temporary file of SegmentBytes. Its name ends in
// ".wal.tmp", so Open removes it if a crash leaves it behind.
func (l *Log) prepareFile() preparedFile {
	f, err := os.CreateTemp(l.dir, "next-*.wal.tmp")
	if err != nil {
		return preparedFile{err: fmt.Errorf("wal: prepare segment: %w", err)}
	}
	pf := preparedFile{f: f, path: f.Name()}
	if err := preallocate(f, l.opts.SegmentBytes); err != nil {
		pf.discard()
		return preparedFile{err: fmt.Errorf("wal: preallocate %s: %w", pf.path, err)}
	}
	if st, err := f.Stat(); err == nil && st.Size() >= l.opts.SegmentBytes {
		pf.size = l.opts.SegmentBytes
	}
	if !l.opts.NoSync {
		if err := fdatasync(f); err != nil {
			pf.discard()
			return preparedFile{err: fmt.Errorf("wal: sync %s: %w", pf.path, err)}
		}
	}
	return pf
}

// takePrepared returns the prepared file, waiting for it if the preparer
// is still at work. Caller holds wmu.
func (l *Log) takePrepared() (preparedFile, error) {
	if l.prep == nil {
		return preparedFile{}, errors.New("no preparer")
	}
	pf := <-l.prep.ready
	return pf, pf.err
}
