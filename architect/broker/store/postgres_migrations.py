"""The PostgreSQL schema: the same tables and columns as the SQLite one (migrations.py), as
plain SQL migrations applied in order when the broker opens the database (postgres.Store).

Each runs once, in its own transaction, and is recorded by name in the `migrations` table.
Every broker that starts takes a transaction-level advisory lock first, so several masters
starting at once against one database apply each migration once. A change is a new
migration, never an edit. The names match the SQLite migrations.

Types: SQLite's REAL is DOUBLE PRECISION, INTEGER is BIGINT, TEXT is TEXT (JSON columns
hold the same encoded text as in SQLite). Ids the broker assigns itself (nodes, tasks,
alerts, ssh_audit: see Store.max_id) are plain BIGINT keys; the others are BIGSERIAL.

PostgreSQL only (several masters, see lease.py): the `leader` row (the lease: epoch, holder,
expiry, the active broker's bus and web addresses), architect_fence(epoch), which every
transaction of a broker calls first and which refuses an old epoch (fencing), and
`bus_keys`, the CURVE key store every master shares (keymirror.py).
"""

from __future__ import annotations

import time

MIGRATIONS_LOCK = 0x61726368  # "arch": pg_advisory_xact_lock key while migrating

MIGRATIONS: list[tuple[str, str]] = [
    ("m001_nodes_metrics_alerts", """
CREATE TABLE nodes (
    id BIGINT PRIMARY KEY, name TEXT NOT NULL, hostname TEXT, ip_address TEXT,
    capabilities TEXT, ssh TEXT, status TEXT, reasons TEXT, drained BIGINT,
    registered_at DOUBLE PRECISION, last_seen DOUBLE PRECISION, last_metrics TEXT,
    source TEXT);
CREATE UNIQUE INDEX idx_nodes_name ON nodes (name);
CREATE TABLE metrics (
    id BIGSERIAL PRIMARY KEY, node_id BIGINT, ts DOUBLE PRECISION,
    cpu_percent DOUBLE PRECISION, memory_percent DOUBLE PRECISION,
    disk_percent DOUBLE PRECISION, load_1 DOUBLE PRECISION, load_5 DOUBLE PRECISION,
    load_15 DOUBLE PRECISION, net_bytes_sent BIGINT, net_bytes_recv BIGINT,
    process_count BIGINT);
CREATE INDEX idx_metrics_node_id_ts ON metrics (node_id, ts);
CREATE INDEX idx_metrics_ts ON metrics (ts);
CREATE TABLE alerts (
    id BIGINT PRIMARY KEY, node_id BIGINT, node_name TEXT, level TEXT, previous_level TEXT,
    reasons TEXT, message TEXT, status TEXT, created_at DOUBLE PRECISION,
    resolved_at DOUBLE PRECISION, acknowledged_at DOUBLE PRECISION, acknowledged_by TEXT);
CREATE INDEX idx_alerts_status ON alerts (status);
CREATE INDEX idx_alerts_node_id_created_at ON alerts (node_id, created_at);
"""),
    ("m002_tasks", """
CREATE TABLE tasks (
    id BIGINT PRIMARY KEY, task_type TEXT, payload TEXT, requirements TEXT, node TEXT,
    priority BIGINT, status TEXT, attempt BIGINT, max_attempts BIGINT, retries BIGINT,
    retry_count BIGINT, retry_backoff DOUBLE PRECISION, timeout DOUBLE PRECISION,
    idempotency_key TEXT, created_at DOUBLE PRECISION, updated_at DOUBLE PRECISION,
    assigned_at DOUBLE PRECISION, started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION,
    assigned_node TEXT, worker_id TEXT, placement TEXT, result TEXT, error TEXT,
    not_before DOUBLE PRECISION, cancel_requested BIGINT, submitted_by TEXT);
CREATE INDEX idx_tasks_status ON tasks (status);
CREATE INDEX idx_tasks_assigned_node_status ON tasks (assigned_node, status);
CREATE UNIQUE INDEX idx_tasks_idempotency_key ON tasks (idempotency_key);
CREATE INDEX idx_tasks_created_at ON tasks (created_at);
CREATE TABLE task_events (
    id BIGSERIAL PRIMARY KEY, task_id BIGINT, ts DOUBLE PRECISION, event TEXT,
    attempt BIGINT, node TEXT, detail TEXT);
CREATE INDEX idx_task_events_task_id ON task_events (task_id);
CREATE TABLE task_output (
    id BIGSERIAL PRIMARY KEY, task_id BIGINT, attempt BIGINT, seq BIGINT, stream TEXT,
    data TEXT, ts DOUBLE PRECISION);
CREATE INDEX idx_task_output_task_id_attempt_seq ON task_output (task_id, attempt, seq);
"""),
    ("m003_ssh_audit", """
CREATE TABLE ssh_audit (
    id BIGINT PRIMARY KEY, ts DOUBLE PRECISION, who TEXT, action TEXT, node TEXT,
    node_id BIGINT, target TEXT, command TEXT, status TEXT, exit_code BIGINT,
    duration DOUBLE PRECISION, error TEXT, finished_at DOUBLE PRECISION, batch TEXT);
CREATE INDEX idx_ssh_audit_ts ON ssh_audit (ts);
CREATE INDEX idx_ssh_audit_node ON ssh_audit (node);
"""),
    ("m004_roles_audit", """
ALTER TABLE alerts ADD COLUMN kind TEXT;
ALTER TABLE alerts ADD COLUMN source TEXT;
CREATE TABLE users (
    name TEXT PRIMARY KEY, role TEXT, password_hash TEXT, created_at DOUBLE PRECISION,
    updated_at DOUBLE PRECISION, created_by TEXT);
CREATE TABLE tokens (
    id BIGSERIAL PRIMARY KEY, kind TEXT, name TEXT, role TEXT, token_hash TEXT,
    created_at DOUBLE PRECISION, created_by TEXT, expires_at DOUBLE PRECISION,
    uses_left BIGINT, used_count BIGINT, last_used_at DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION);
CREATE UNIQUE INDEX idx_tokens_token_hash ON tokens (token_hash);
CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY, ts DOUBLE PRECISION, who TEXT, role TEXT, via TEXT,
    addr TEXT, method TEXT, target TEXT, params TEXT, outcome TEXT, error TEXT);
CREATE INDEX idx_audit_ts ON audit (ts);
CREATE INDEX idx_audit_who_ts ON audit (who, ts);
"""),
    ("m005_leader", """
CREATE TABLE leader (
    id BIGINT PRIMARY KEY CHECK (id = 1), epoch BIGINT NOT NULL, holder TEXT,
    since DOUBLE PRECISION, renewed_at DOUBLE PRECISION, expires_at DOUBLE PRECISION,
    bus TEXT, web TEXT);
INSERT INTO leader (id, epoch) VALUES (1, 0);
CREATE FUNCTION architect_fence(e BIGINT) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- KEY SHARE: renewals (UPDATE of other columns) do not wait for it; a takeover
    -- (SELECT ... FOR UPDATE first) does, so no old-epoch commit lands after a new epoch
    PERFORM 1 FROM leader WHERE id = 1 AND epoch = e FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'fenced: epoch % is no longer the leader''s', e USING ERRCODE = 'AR001';
    END IF;
END $$;
CREATE TABLE bus_keys (
    folder TEXT NOT NULL, name TEXT NOT NULL, public TEXT NOT NULL, secret TEXT,
    role TEXT, PRIMARY KEY (folder, name));
"""),
    ("m006_history_scale", """
CREATE INDEX idx_tasks_finished_at ON tasks (finished_at);
CREATE TABLE task_rollup (
    hour BIGINT NOT NULL, node TEXT NOT NULL, status TEXT NOT NULL, count BIGINT NOT NULL,
    PRIMARY KEY (hour, node, status));
INSERT INTO task_rollup (hour, node, status, count)
    SELECT CAST(floor(created_at / 3600) AS BIGINT) * 3600, COALESCE(assigned_node, ''),
           status, COUNT(*) FROM tasks
    WHERE status IN ('succeeded', 'failed', 'timed_out', 'cancelled') GROUP BY 1, 2, 3;
"""),
    ("m007_schedules", """
CREATE TABLE schedules (
    name TEXT PRIMARY KEY, spec TEXT, cron TEXT, every DOUBLE PRECISION, tz TEXT, missed TEXT,
    overlap TEXT, paused BIGINT, next_due DOUBLE PRECISION, last_due DOUBLE PRECISION,
    last_task BIGINT, last_outcome TEXT, created_at DOUBLE PRECISION,
    updated_at DOUBLE PRECISION, created_by TEXT);
CREATE TABLE schedule_runs (
    id BIGSERIAL PRIMARY KEY, schedule TEXT, due DOUBLE PRECISION, at DOUBLE PRECISION,
    outcome TEXT, task_id BIGINT, detail TEXT);
CREATE INDEX idx_schedule_runs_schedule_id ON schedule_runs (schedule, id);
CREATE INDEX idx_schedule_runs_task_id ON schedule_runs (task_id);
"""),
    ("m008_task_time_and_retry_rules", """
ALTER TABLE tasks ADD COLUMN expires_at DOUBLE PRECISION;
ALTER TABLE tasks ADD COLUMN retry_on TEXT;
ALTER TABLE tasks ADD COLUMN no_retry_on TEXT;
"""),
    ("m009_workflows", """
ALTER TABLE tasks ADD COLUMN depends_on TEXT;
ALTER TABLE tasks ADD COLUMN pass_results BIGINT;
CREATE TABLE task_deps (task_id BIGINT NOT NULL, dep_id BIGINT NOT NULL,
                        PRIMARY KEY (task_id, dep_id));
CREATE INDEX idx_task_deps_dep_id ON task_deps (dep_id);
"""),
    ("m010_unique_tasks", """
ALTER TABLE tasks ADD COLUMN unique_key TEXT;
ALTER TABLE tasks ADD COLUMN unique_until DOUBLE PRECISION;
CREATE INDEX idx_tasks_unique_until ON tasks (unique_until);
"""),
    ("m011_task_labels", """
ALTER TABLE tasks ADD COLUMN labels TEXT;
"""),
    ("m012_soft_timeout", """
ALTER TABLE tasks ADD COLUMN soft_timeout DOUBLE PRECISION;
"""),
    ("m013_queues", """
ALTER TABLE tasks ADD COLUMN queue TEXT;
CREATE TABLE queues (name TEXT PRIMARY KEY, concurrency BIGINT, rate DOUBLE PRECISION,
                     rate_text TEXT);
"""),
    ("m014_alert_rules", """
CREATE TABLE node_thresholds (
    node TEXT PRIMARY KEY, cpu_warning DOUBLE PRECISION, cpu_critical DOUBLE PRECISION,
    memory_warning DOUBLE PRECISION, memory_critical DOUBLE PRECISION,
    disk_warning DOUBLE PRECISION, disk_critical DOUBLE PRECISION,
    load_warning DOUBLE PRECISION, load_critical DOUBLE PRECISION,
    updated_at DOUBLE PRECISION, updated_by TEXT);
CREATE TABLE alert_rules (
    name TEXT PRIMARY KEY, expr TEXT NOT NULL, level TEXT, node TEXT, capability TEXT,
    created_at DOUBLE PRECISION, created_by TEXT);
"""),
    ("m015_notifications", """
CREATE TABLE notify_channels (name TEXT PRIMARY KEY, kind TEXT, config TEXT,
                              created_at DOUBLE PRECISION, created_by TEXT);
CREATE TABLE notify_rules (name TEXT PRIMARY KEY, channels TEXT, min_level TEXT, node TEXT,
                           matchers TEXT, repeat_interval DOUBLE PRECISION, send_resolved BIGINT,
                           created_at DOUBLE PRECISION, created_by TEXT);
CREATE TABLE silences (id BIGINT PRIMARY KEY, node TEXT, matchers TEXT,
                       starts_at DOUBLE PRECISION, ends_at DOUBLE PRECISION, comment TEXT,
                       created_by TEXT, created_at DOUBLE PRECISION, kind TEXT);
CREATE INDEX idx_silences_ends_at ON silences (ends_at);
CREATE TABLE notifications (
    id BIGINT PRIMARY KEY, delivery BIGINT, attempt BIGINT, channel TEXT, kind TEXT, event TEXT,
    rule TEXT, alert_id BIGINT, node TEXT, outcome TEXT, error TEXT, detail TEXT,
    at DOUBLE PRECISION, duration DOUBLE PRECISION, retry_at DOUBLE PRECISION);
CREATE INDEX idx_notifications_delivery ON notifications (delivery);
CREATE INDEX idx_notifications_channel_id ON notifications (channel, id);
CREATE INDEX idx_notifications_at ON notifications (at);
"""),
    ("m016_metrics_rollups", """
CREATE TABLE metrics_1m (
    node_id BIGINT NOT NULL, ts BIGINT NOT NULL, samples BIGINT NOT NULL,
    cpu_percent DOUBLE PRECISION, cpu_percent_min DOUBLE PRECISION, cpu_percent_max DOUBLE PRECISION,
    memory_percent DOUBLE PRECISION, memory_percent_min DOUBLE PRECISION, memory_percent_max DOUBLE PRECISION,
    disk_percent DOUBLE PRECISION, disk_percent_min DOUBLE PRECISION, disk_percent_max DOUBLE PRECISION,
    load_1 DOUBLE PRECISION, load_1_min DOUBLE PRECISION, load_1_max DOUBLE PRECISION,
    PRIMARY KEY (node_id, ts));
CREATE INDEX idx_metrics_1m_ts ON metrics_1m (ts);
CREATE TABLE metrics_1h (
    node_id BIGINT NOT NULL, ts BIGINT NOT NULL, samples BIGINT NOT NULL,
    cpu_percent DOUBLE PRECISION, cpu_percent_min DOUBLE PRECISION, cpu_percent_max DOUBLE PRECISION,
    memory_percent DOUBLE PRECISION, memory_percent_min DOUBLE PRECISION, memory_percent_max DOUBLE PRECISION,
    disk_percent DOUBLE PRECISION, disk_percent_min DOUBLE PRECISION, disk_percent_max DOUBLE PRECISION,
    load_1 DOUBLE PRECISION, load_1_min DOUBLE PRECISION, load_1_max DOUBLE PRECISION,
    PRIMARY KEY (node_id, ts));
CREATE INDEX idx_metrics_1h_ts ON metrics_1h (ts);
CREATE TABLE metrics_rollup_state (level TEXT PRIMARY KEY, done_until DOUBLE PRECISION NOT NULL);
"""),
]


def apply(conn) -> list[str]:
    """Apply the migrations not applied yet (conn: psycopg, autocommit off, no transaction
    open); returns the names applied now. Idempotent."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATIONS_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, "
                     "applied_at DOUBLE PRECISION NOT NULL)")
        done = {r[0] for r in conn.execute("SELECT name FROM migrations").fetchall()}
        applied = []
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            with conn.transaction():   # a savepoint: one migration, all or nothing
                conn.execute(sql)
                conn.execute("INSERT INTO migrations (name, applied_at) VALUES (%s, %s)",
                             (name, time.time()))
            applied.append(name)
    return applied
