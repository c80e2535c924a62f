// Package bench is make bench: on a fresh local stack it measures the
// machine's ceilings (JetStream async publish of messages the size of the
// saga's, and a Postgres transaction shaped like one saga step), then runs
// the saga at its maximum sustained rate (closed loop) and at a fixed
// offered rate (open loop) with the load package, and prints one table:
// sagas/s, latency, read-model lag, CPU per saga, each process's peak
// memory, and how close the saga's message and transaction rates come to
// the ceilings.
package bench
