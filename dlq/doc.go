// Package dlq reads, replays and purges the dead letters of the DLQ stream:
// what jetsaga dlq ls, show, replay and purge do.
//
// A replay republishes a dead letter's event, with its original headers
// and body, to the REPLAY stream on replay.<service>.<consumer>.<dlq seq>,
// naming the one durable consumer that dead-lettered it; that service's
// replay consumer hands it to that consumer's handler under that
// consumer's inbox key, so the event keeps its id and stays idempotent, and
// no other consumer sees it. The event streams are not touched. Once REPLAY
// acked the publish, the dead letter is deleted from DLQ.
package dlq
