//go:build !unix || solaris || aix || illumos

package wal

import "os"

// lockFile is a no-op where flock is unavailable; exclusive use of the
// directory is then the caller's responsibility.
func lockFile(f *os.File) error { return nil }
