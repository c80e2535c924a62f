package consume

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// PrunerConfig tunes an InboxPruner. Zero values take the defaults.
type PrunerConfig struct {
	// Retention is how long an inbox row is kept after its event was
	// handled: far longer than anything can redeliver or republish the
	// event (the stream's duplicate window, AckWait, a dead-letter replay
	// soon after). Past it, the business keys (one reservation, one
	// payment per order, monotone order states) are the guard. Default 7
	// days.
	Retention time.Duration
	Every     time.Duration // how often to look for expired rows; default 1m
	Batch     int           // rows deleted per statement; default 1,000
	Pause     time.Duration // between two deletes of one pass; default 50ms
	Logger    *zap.Logger
	Now       func() time.Time
}

// InboxPruner deletes inbox rows older than the retention, a small batch at
// a time with a pause between batches, so that the hot path's inserts never
// wait long for it. Build it with NewInboxPruner, run it with Run.
type InboxPruner struct {
	pool *pgxpool.Pool
	cfg  PrunerConfig
}

// NewInboxPruner returns a pruner of the inbox of pool's schema.
func NewInboxPruner(pool *pgxpool.Pool, cfg PrunerConfig) (*InboxPruner, error) {
	if pool == nil {
		return nil, errors.New("consume: the inbox pruner needs a pool")
	}
	cfg.Retention = cmp.Or(cfg.Retention, 7*24*time.Hour)
	cfg.Every = cmp.Or(cfg.Every, time.Minute)
	cfg.Batch = cmp.Or(cfg.Batch, 1000)
	cfg.Pause = cmp.Or(cfg.Pause, 50*time.Millisecond)
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Retention < 0 || cfg.Every < 0 || cfg.Batch < 0 {
		return nil, fmt.Errorf("consume: inbox pruner: retention %s, every %s, batch %d: none may be negative",
			cfg.Retention, cfg.Every, cfg.Batch)
	}
	return &InboxPruner{pool: pool, cfg: cfg}, nil
}

// Run prunes every Every until ctx is done, then returns nil.
func (p *InboxPruner) Run(ctx context.Context) error {
	t := time.NewTicker(p.cfg.Every)
	defer t.Stop()
	log := p.cfg.Logger.Named("inbox")
	for {
		if n, err := p.Prune(ctx); err != nil && ctx.Err() == nil {
			log.Warn("inbox prune failed; trying again later", zap.Error(err))
		} else if n > 0 {
			log.Info("inbox pruned", zap.Int64("rows", n), zap.Duration("retention", p.cfg.Retention))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Prune deletes every inbox row handled before now - Retention, Batch rows
// per statement, and returns how many it deleted.
func (p *InboxPruner) Prune(ctx context.Context) (int64, error) {
	cutoff := p.cfg.Now().Add(-p.cfg.Retention)
	var total int64
	for {
		tag, err := p.pool.Exec(ctx, `
			DELETE FROM inbox
			WHERE ctid IN (SELECT ctid FROM inbox WHERE handled_at < $1 LIMIT $2)`, cutoff, p.cfg.Batch)
		if err != nil {
			return total, fmt.Errorf("prune inbox before %s: %w", cutoff.Format(time.RFC3339), err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(p.cfg.Batch) {
			return total, nil
		}
		sleep(ctx, p.cfg.Pause)
		if ctx.Err() != nil {
			return total, ctx.Err()
		}
	}
}
