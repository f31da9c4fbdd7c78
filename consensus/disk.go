package consensus

import "fmt"

// openDisk opens the durable log and snapshot store in c.Dir.
func openDisk(c Config) (logStore, snapStore, error) {
	return nil, nil, fmt.Errorf("consensus: Dir %q: durable storage is not available in this build; use Memory: %w", c.Dir, ErrInvalidConfig)
}
