-- Durable task queue, SQLite dialect (local mode: one process). Every write runs in a
-- BEGIN IMMEDIATE transaction, which takes SQLite's single write lock up front, so a
-- claim's read and update cannot interleave with another's. Times are bound from the
-- process clock (:now) in the same text form SQLAlchemy's DateTime writes.

-- enqueue: insert one task (a duplicate dedupe key inserts nothing)
INSERT INTO tasks (
    tenant_id, queue, kind, payload, state, priority, attempts, max_attempts,
    run_after, created_at, cancel_requested, dedupe_key
)
VALUES (
    :tenant_id, :queue, :kind, :payload, 'queued', :priority, 0, :max_attempts,
    :run_after, :now, 0, :dedupe_key
)
ON CONFLICT (tenant_id, dedupe_key) DO NOTHING
RETURNING id

-- find_by_dedupe_key: the task an earlier enqueue made with this key
SELECT id FROM tasks WHERE tenant_id = :tenant_id AND dedupe_key = :dedupe_key

-- claim: fair claim of one eligible task, see docs/queue.md "Fairness"
UPDATE tasks SET
    state = 'running',
    attempts = attempts + 1,
    lease_owner = :owner,
    lease_token = :token,
    lease_expires_at = :lease_until,
    started_at = :now,
    finished_at = NULL
WHERE id = (
    WITH waiting AS (
        SELECT DISTINCT tenant_id FROM tasks
        WHERE state = 'queued' AND queue = :queue AND run_after <= :now
    ),
    ranked AS (
        SELECT
            w.tenant_id,
            (
                SELECT count(*) FROM tasks r
                WHERE r.state = 'running' AND r.tenant_id = w.tenant_id
            ) AS running,
            (
                SELECT max(s.started_at) FROM tasks s
                WHERE s.tenant_id = w.tenant_id AND s.started_at IS NOT NULL
            ) AS last_started,
            (
                SELECT t.id FROM tasks t
                WHERE t.state = 'queued' AND t.queue = :queue AND t.tenant_id = w.tenant_id
                  AND t.run_after <= :now
                ORDER BY t.priority, t.id
                LIMIT 1
            ) AS head
        FROM waiting w
    )
    SELECT head FROM ranked
    ORDER BY running, last_started, head
    LIMIT 1
)
RETURNING *

-- heartbeat: extend a held lease; reports whether cancellation was requested
UPDATE tasks SET lease_expires_at = :lease_until
WHERE id = :id AND lease_token = :token AND state = 'running'
RETURNING cancel_requested

-- complete: record success, only while the lease is held
UPDATE tasks SET
    state = 'succeeded',
    result = :result,
    finished_at = :now,
    lease_expires_at = NULL
WHERE id = :id AND lease_token = :token AND state = 'running'
RETURNING id

-- held: the fields a failure decision needs, only while the lease is held
SELECT attempts, max_attempts, cancel_requested FROM tasks
WHERE id = :id AND lease_token = :token AND state = 'running'

-- settle: move a held task to the state the caller decided (fail, retry, cancel)
UPDATE tasks SET
    state = :state,
    run_after = coalesce(:run_after, run_after),
    finished_at = CASE WHEN :state = 'queued' THEN NULL ELSE :now END,
    last_error = :error,
    lease_expires_at = NULL
WHERE id = :id AND lease_token = :token AND state = 'running'
RETURNING state, run_after

-- release: give a held task back untouched (graceful stop); the attempt is not counted
UPDATE tasks SET
    state = 'queued',
    attempts = max(attempts - 1, 0),
    run_after = :now,
    lease_expires_at = NULL
WHERE id = :id AND lease_token = :token AND state = 'running'
RETURNING id

-- cancel: cancel a queued task at once; ask a running one to stop
UPDATE tasks SET
    state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
    finished_at = CASE WHEN state = 'queued' THEN :now ELSE finished_at END,
    cancel_requested = 1
WHERE id = :id AND state IN ('queued', 'running')
RETURNING state

-- fence: does this lease still hold the task? (the write lock is already held)
SELECT 1 FROM tasks
WHERE id = :id AND lease_token = :token AND state = 'running'

-- expired: running tasks whose lease has expired
SELECT id, tenant_id, attempts, max_attempts, cancel_requested, lease_owner, lease_token
FROM tasks
WHERE state = 'running' AND lease_expires_at < :now
ORDER BY lease_expires_at
LIMIT :limit

-- get: one task by id
SELECT * FROM tasks WHERE id = :id

-- counts: tasks by tenant, queue and state, with the oldest task's creation time
SELECT
    tenant_id,
    queue,
    state,
    count(*) AS n,
    min(created_at) AS oldest_created_at
FROM tasks
GROUP BY tenant_id, queue, state
ORDER BY tenant_id, queue, state

-- purge_finished: delete finished tasks older than a cutoff
DELETE FROM tasks
WHERE state IN ('succeeded', 'failed', 'cancelled') AND finished_at < :cutoff

-- fence_lock: take the write lock and check the lease in one statement
UPDATE tasks SET lease_token = lease_token
WHERE id = :id AND lease_token = :token AND state = 'running'
RETURNING id
