package logstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/vitrine-dev/vitrine/internal/tilestore"
)

// driverSchema is what a Tessera driver keeps in its MySQL database.
type driverSchema struct {
	// name is the driver's, for messages.
	name string
	// statements create the tables, InnoDB, if missing.
	statements []string
	// tables are the tables it needs.
	tables []string
	// others are tables only the other driver has: a database holding
	// one holds the other driver's log.
	others []string
	// otherKind is the location kind of the other driver.
	otherKind string
}

// prepareDatabase checks that the server keeps what it commits, creates
// the driver's tables and checks them, and returns max_allowed_packet.
// Tessera answers an append once its batch's transaction commits, so a
// commit must be durable (innodb_flush_log_at_trx_commit=1), and it
// serializes writers with SELECT … FOR UPDATE, which only InnoDB honours.
func prepareDatabase(ctx context.Context, db *sql.DB, s driverSchema) (packet int64, err error) {
	if err := db.PingContext(ctx); err != nil {
		return 0, fmt.Errorf("connecting to MySQL: %w", err)
	}
	var flush int
	if err := db.QueryRowContext(ctx, "SELECT @@innodb_flush_log_at_trx_commit").Scan(&flush); err != nil {
		return 0, fmt.Errorf("reading innodb_flush_log_at_trx_commit: %w", err)
	}
	if flush != 1 {
		return 0, fmt.Errorf("the server has innodb_flush_log_at_trx_commit=%d: a commit is not durable when it returns, so an acknowledged entry could be lost; set it to 1", flush)
	}
	var others int
	q := "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN (?" + strings.Repeat(", ?", len(s.others)-1) + ")"
	args := make([]any, len(s.others))
	for i, t := range s.others {
		args[i] = t
	}
	if err := db.QueryRowContext(ctx, q, args...).Scan(&others); err != nil {
		return 0, fmt.Errorf("checking the database: %w", err)
	}
	if others > 0 {
		return 0, fmt.Errorf("the database holds a log of Tessera's other driver (%s://): give this log a database of its own", s.otherKind)
	}
	for _, stmt := range s.statements {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return 0, fmt.Errorf("creating Tessera's %s schema: %w", s.name, err)
		}
	}
	for _, t := range s.tables {
		var engine string
		err := db.QueryRowContext(ctx, "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?", t).Scan(&engine)
		if err != nil {
			return 0, fmt.Errorf("checking table %s: %w", t, err)
		}
		if !strings.EqualFold(engine, "InnoDB") {
			return 0, fmt.Errorf("table %s uses the %s engine: Tessera's %s driver needs InnoDB's row locks and transactions", t, engine, s.name)
		}
	}
	if err := db.QueryRowContext(ctx, "SELECT @@max_allowed_packet").Scan(&packet); err != nil {
		return 0, fmt.Errorf("reading max_allowed_packet: %w", err)
	}
	return packet, nil
}

// healthProbe reports a store's health from a probe run at most once a
// second. Its methods are safe for concurrent use.
type healthProbe struct {
	probe func(context.Context) error

	mu      sync.Mutex
	checked time.Time
	health  tilestore.Health
}

func newHealthProbe(probe func(context.Context) error) *healthProbe {
	return &healthProbe{probe: probe, health: tilestore.Health{State: tilestore.Healthy}}
}

// get returns the health, probing if the last probe is a second old.
func (h *healthProbe) get() tilestore.Health {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	if now.Sub(h.checked) < time.Second {
		return h.health
	}
	h.checked = now
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := h.probe(ctx); err != nil {
		if h.health.State == tilestore.Healthy {
			h.health = tilestore.Health{State: tilestore.Broken, Since: now}
		}
		h.health.Reason = err.Error()
		h.health.NextAttempt = now.Add(time.Second)
		h.health.Attempts++
		return h.health
	}
	if h.health.State != tilestore.Healthy {
		h.health = tilestore.Health{State: tilestore.Healthy, Recoveries: h.health.Recoveries + 1, Recovered: now}
	}
	return h.health
}
