package consume

import (
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/jetsaga/jetsaga/internal/stream"
)

// Limits of a message the contract allows (DESIGN.md, "Event contract"). The
// longest contract subject is "inventory.reserved.<shard>", 21 bytes, and the
// longest legacy one, which history written before subjects were sharded
// holds and FromMsg still reads, "inventory.reserved.<order id of 64
// chars>", 83 bytes; an event body is a small JSON document.
const (
	// MaxSubjectLen is the longest subject a consumer accepts.
	MaxSubjectLen = 128
	// MaxMessageSize is the most a message's headers and body may hold
	// together; the event streams refuse larger ones (max_msg_size).
	MaxMessageSize = stream.MaxEventSize
)

// admit checks what a message could carry before anything else looks at it:
// a subject longer than MaxSubjectLen or a message larger than
// MaxMessageSize breaks the contract, and the message is dead-lettered in
// its truncated form.
func admit(subject string, h nats.Header, data []byte) error {
	if n := len(subject); n > MaxSubjectLen {
		return Permanent(fmt.Errorf("subject of %d bytes exceeds the limit of %d", n, MaxSubjectLen))
	}
	size := len(data)
	for k, vs := range h {
		for _, v := range vs {
			size += len(k) + len(v) + 4
		}
	}
	if size > MaxMessageSize {
		return Permanent(fmt.Errorf("message of %d bytes exceeds the limit of %d", size, MaxMessageSize))
	}
	return nil
}
