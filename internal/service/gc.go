package service

import "runtime/debug"

// A service's garbage collector, unless the environment says otherwise
// (GOGC, GOMEMLIMIT). The services keep little live memory (a few MiB) and
// allocate per message (decoded events, pgx batches): with the runtime's
// default GOGC of 100 they collect many times a second under load. Letting
// the heap grow to 5× what is live before collecting took a fifth off the
// services' CPU per saga (bin/jetsaga load --rate 0 --concurrency 128);
// the soft memory limit makes the collector work harder again as the heap
// nears it, so that a service stays within about 100 MiB resident.
const (
	defaultGCPercent   = 400
	defaultMemoryLimit = 80 << 20 // bytes
)

// tuneGC applies the defaults above to what getenv leaves unset, and
// returns what it set (0: left as the environment has it).
func tuneGC(getenv func(string) string) (gcPercent int, memoryLimit int64) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
		gcPercent = defaultGCPercent
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
		memoryLimit = defaultMemoryLimit
	}
	return gcPercent, memoryLimit
}
