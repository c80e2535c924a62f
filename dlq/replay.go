package dlq

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/internal/stream"
)

// Options choose what Replay does.
type Options struct {
	Service string // only dead letters of this service ("" for all)
	DryRun  bool   // say what would be replayed; publish and delete nothing
}

// Outcome is what became of one dead letter asked for.
type Outcome struct {
	Entry
	Replayed bool   // published to REPLAY and deleted from DLQ (or would be, in a dry run)
	To       string // the replay's subject
	Skipped  error  // why it was not replayed (ErrTruncated, ErrNotReplayable, ErrNotFound, another service)
}

// Replay replays the dead letters at seqs, or every dead letter (of
// opt.Service) when seqs is empty, reporting each outcome to report as it
// goes. A dead letter that cannot be replayed is skipped with its reason;
// the error is for a failure to read DLQ, publish to REPLAY or delete from
// DLQ, and stops the replay there.
func Replay(ctx context.Context, js jetstream.JetStream, seqs []uint64, opt Options, report func(Outcome)) error {
	s, err := js.Stream(ctx, stream.DLQ)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream.DLQ, err)
	}
	if !opt.DryRun {
		if _, err := js.Stream(ctx, stream.Replay); err != nil {
			return fmt.Errorf("stream %s: %w (the services provision it when they start)", stream.Replay, err)
		}
	}
	if len(seqs) == 0 {
		if _, err := scan(ctx, js, opt.Service, func(e Entry) { seqs = append(seqs, e.Seq) }); err != nil {
			return err
		}
	}
	for _, seq := range seqs {
		out, err := replayOne(ctx, js, s, seq, opt)
		if err != nil {
			return err
		}
		report(out)
	}
	return nil
}

func replayOne(ctx context.Context, js jetstream.JetStream, s jetstream.Stream, seq uint64, opt Options) (Outcome, error) {
	m, err := get(ctx, s, seq)
	if errors.Is(err, ErrNotFound) {
		return Outcome{Entry: Entry{Seq: seq}, Skipped: ErrNotFound}, nil
	}
	if err != nil {
		return Outcome{}, err
	}
	out := Outcome{Entry: m.Entry}
	if opt.Service != "" && m.Service != opt.Service {
		out.Skipped = fmt.Errorf("%w: a dead letter of %s, not %s", ErrNotReplayable, m.Service, opt.Service)
		return out, nil
	}
	if out.Skipped = m.replayable(); out.Skipped != nil {
		return out, nil
	}
	msg := m.replayMsg()
	out.To = msg.Subject
	if opt.DryRun {
		out.Replayed = true
		return out, nil
	}
	// REPLAY dedups on the replay's id: a crash between this publish and
	// the delete replays nothing twice within the window, and past it the
	// consumer's inbox holds the event id.
	if _, err := js.PublishMsg(ctx, msg, jetstream.WithExpectStream(stream.Replay)); err != nil {
		return out, fmt.Errorf("replay %s #%d to %s: %w", stream.DLQ, seq, msg.Subject, err)
	}
	if err := s.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return out, fmt.Errorf("replayed %s #%d but could not delete it from %s: %w", stream.DLQ, seq, stream.DLQ, err)
	}
	out.Replayed = true
	return out, nil
}

// Purge removes every dead letter of service ("" for all) that is in DLQ
// now, and returns them (headers only). A dead letter that arrives while it
// runs is kept.
func Purge(ctx context.Context, js jetstream.JetStream, service string) ([]Entry, error) {
	s, err := js.Stream(ctx, stream.DLQ)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream.DLQ, err)
	}
	var gone []Entry
	last, err := scan(ctx, js, service, func(e Entry) { gone = append(gone, e) })
	if err != nil || last == 0 {
		return nil, err
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(filter(service)), jetstream.WithPurgeSequence(last+1)); err != nil {
		return nil, fmt.Errorf("purge %s %s: %w", stream.DLQ, filter(service), err)
	}
	return gone, nil
}
