-- Durable task queue, Postgres dialect. Times come from the database clock (now()),
-- so a fleet of workers with skewed clocks agrees on what has expired.
--
-- Lock order (docs/queue.md "Lock order"): a statement that completes held tasks and
-- claims new ones must finish its completions -- the only part that may *wait* for a
-- row lock -- before it takes any claim lock. A claim's FOR UPDATE SKIP LOCKED never
-- waits, but it can leave a lock on a row it then rejects: its snapshot saw the row
-- queued, a peer has claimed it since, and the lock is taken on the newest version
-- before the recheck discards it. That row is now the peer's running task, and the
-- peer's next completion waits for our statement to end. If our statement were
-- itself waiting on its own completion (behind a third worker's stray lock), the
-- waits close a cycle: the three-way deadlock of issue #20. So every pick fragment
-- is gated on before_pick(n), which each statement defines: ``SELECT 0`` for a plain
-- claim, ``SELECT count(*) FROM done`` where the statement completes tasks. The
-- gate is an uncorrelated subquery, so Postgres evaluates it (running the done
-- UPDATE to the end) as a one-time filter before the first candidate row is locked.
-- A statement then waits only while it holds no claim locks, and a statement that
-- holds claim locks never waits: no cycle can form.

-- enqueue: insert one task (a duplicate dedupe key inserts nothing) and wake listeners
WITH inserted AS (
    INSERT INTO tasks (
        tenant_id, queue, kind, payload, state, priority, attempts, max_attempts,
        run_after, created_at, cancel_requested, dedupe_key
    )
    VALUES (
        :tenant_id, :queue, :kind, :payload, 'queued', :priority, 0, :max_attempts,
        now() + make_interval(secs => :delay), now(), false, :dedupe_key
    )
    ON CONFLICT (tenant_id, dedupe_key) DO NOTHING
    RETURNING id
)
SELECT inserted.id, pg_notify('quarry_tasks', :queue) AS notified FROM inserted

-- enqueue_many: insert many tasks in one statement, in the order of their ord field
-- (:rows is a JSON array; ids are drawn in that order), and wake each queue's
-- listeners once. A duplicate dedupe key inserts nothing for that row.
WITH input AS (
    SELECT * FROM json_to_recordset(CAST(:rows AS json)) AS r(
        ord int, tenant_id text, queue text, kind text, payload text, priority int,
        max_attempts int, delay float8, dedupe_key text
    )
),
inserted AS (
    INSERT INTO tasks (
        tenant_id, queue, kind, payload, state, priority, attempts, max_attempts,
        run_after, created_at, cancel_requested, dedupe_key
    )
    SELECT
        tenant_id, queue, kind, payload, 'queued', priority, 0, max_attempts,
        now() + make_interval(secs => delay), now(), false, dedupe_key
    FROM input
    ORDER BY ord
    ON CONFLICT (tenant_id, dedupe_key) DO NOTHING
    RETURNING id, tenant_id, dedupe_key
),
notified AS (
    SELECT pg_notify('quarry_tasks', queues.queue) FROM (SELECT DISTINCT queue FROM input) AS queues
)
SELECT inserted.id, inserted.tenant_id, inserted.dedupe_key,
       (SELECT count(*) FROM notified) AS notified
FROM inserted

-- find_by_dedupe_key: the task an earlier enqueue made with this key
SELECT id FROM tasks WHERE tenant_id = :tenant_id AND dedupe_key = :dedupe_key

-- claim: fair claim of one eligible task, see docs/queue.md "Fairness"
WITH RECURSIVE before_pick(n) AS (SELECT 0),
--@ include _fair_rank
--@ include _pick_one
--@ include _claim_set
FROM picked
WHERE tasks.id = picked.id
RETURNING tasks.*

-- complete_and_claim: complete a held task and claim the next (fair) in one statement
WITH RECURSIVE done AS (
    UPDATE tasks SET
        state = 'succeeded',
        result = :result,
        finished_at = now(),
        lease_expires_at = NULL
    WHERE id = :done_id AND lease_token = :done_token AND state = 'running'
    RETURNING id
),
before_pick(n) AS (SELECT count(*) FROM done),
--@ include _fair_rank
--@ include _pick_one
, claimed AS (
    --@ include _claim_set
    FROM picked
    WHERE tasks.id = picked.id
    RETURNING tasks.*
)
SELECT (SELECT count(*) FROM done) AS completed, claimed.*
FROM (SELECT 1) AS one LEFT JOIN claimed ON true

-- claim_unfair: one eligible task in (priority, id) order, ignoring tenants
--@ include _claim_set
WHERE tasks.id = (
    SELECT t.id FROM tasks t
    WHERE t.state = 'queued' AND t.queue = :queue AND t.run_after <= now()
    ORDER BY t.priority, t.id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING tasks.*

-- complete_many_and_claim: complete held tasks (each fenced by its own token) and claim up to :batch more (fair) in one statement
WITH RECURSIVE done AS (
    --@ include _complete_many
),
before_pick(n) AS (SELECT count(*) FROM done),
--@ include _fair_rank
--@ include _pick_many
, claimed AS (
    --@ include _claim_set
    FROM picked
    WHERE tasks.id = picked.id
    RETURNING tasks.*, picked.ord
)
SELECT
    coalesce((SELECT array_agg(done.id) FROM done), CAST('{}' AS bigint[])) AS completed_ids,
    claimed.*
FROM (SELECT 1) AS one LEFT JOIN claimed ON true
ORDER BY claimed.ord

-- complete_many: record success for held tasks, each fenced by its own lease token
--@ include _complete_many

-- heartbeat_many: extend every held lease in the list; the rows still held, with cancellation requests
UPDATE tasks SET lease_expires_at = now() + make_interval(secs => :lease_seconds)
FROM unnest(CAST(:ids AS bigint[]), CAST(:tokens AS text[])) AS h(id, token)
WHERE tasks.id = h.id AND tasks.lease_token = h.token AND tasks.state = 'running'
RETURNING tasks.id, tasks.cancel_requested

-- release_many: give held tasks back untouched (graceful stop); their attempts are not counted
UPDATE tasks SET
    state = 'queued',
    attempts = greatest(tasks.attempts - 1, 0),
    run_after = now(),
    lease_expires_at = NULL
FROM unnest(CAST(:ids AS bigint[]), CAST(:tokens AS text[])) AS h(id, token)
WHERE tasks.id = h.id AND tasks.lease_token = h.token AND tasks.state = 'running'
RETURNING tasks.id

-- heartbeat: extend a held lease; reports whether cancellation was requested
UPDATE tasks SET lease_expires_at = now() + make_interval(secs => :lease_seconds)
WHERE id = :id AND lease_token = :token AND state = 'running'
RETURNING cancel_requested

-- complete: record success, only while the lease is held
UPDATE tasks SET
    state = 'succeeded',
    result = :result,
    finished_at = now(),
    lease_expires_at = NULL
WHERE id = :id AND lease_token = :token AND state = 'running'
RETURNING id

-- fail: record a failure; retry with exponential backoff while attempts remain
UPDATE tasks SET
    state = CASE
        WHEN cancel_requested THEN 'cancelled'
        WHEN :retry AND attempts < max_attempts THEN 'queued'
        ELSE 'failed'
    END,
    run_after = CASE
        WHEN NOT cancel_requested AND :retry AND attempts < max_attempts
        THEN now() + make_interval(
            secs => least(:backoff_max, :backoff_base * power(2, greatest(attempts - 1, 0)))
        )
        ELSE run_after
    END,
    finished_at = CASE
        WHEN NOT cancel_requested AND :retry AND attempts < max_attempts THEN NULL
        ELSE now()
    END,
    last_error = :error,
    lease_expires_at = NULL
WHERE id = :id AND lease_token = :token AND state = 'running'
RETURNING state, run_after

-- release: give a held task back untouched (graceful stop); the attempt is not counted
UPDATE tasks SET
    state = 'queued',
    attempts = greatest(attempts - 1, 0),
    run_after = now(),
    lease_expires_at = NULL
WHERE id = :id AND lease_token = :token AND state = 'running'
RETURNING id

-- acknowledge_cancel: the holder stopped because cancellation was requested
UPDATE tasks SET
    state = 'cancelled',
    finished_at = now(),
    last_error = :error,
    lease_expires_at = NULL
WHERE id = :id AND lease_token = :token AND state = 'running'
RETURNING id

-- cancel: cancel a queued task at once; ask a running one to stop (announced on
-- quarry_task_cancel at commit, so its worker heartbeats now, not at its next beat)
WITH asked AS (
    UPDATE tasks SET
        state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
        finished_at = CASE WHEN state = 'queued' THEN now() ELSE finished_at END,
        cancel_requested = true
    WHERE id = :id AND state IN ('queued', 'running')
    RETURNING id, state
)
SELECT state,
    CASE WHEN state = 'running'
        THEN pg_notify('quarry_task_cancel', id::text) END AS announced
FROM asked

-- fence: lock the task row if and only if this lease still holds it
SELECT 1 FROM tasks
WHERE id = :id AND lease_token = :token AND state = 'running'
FOR UPDATE

-- reap: re-queue (or fail, or cancel) tasks whose lease expired
WITH expired AS (
    SELECT id FROM tasks
    WHERE state = 'running' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE tasks SET
    state = CASE
        WHEN tasks.cancel_requested THEN 'cancelled'
        WHEN tasks.attempts >= tasks.max_attempts THEN 'failed'
        ELSE 'queued'
    END,
    run_after = CASE
        WHEN NOT tasks.cancel_requested AND tasks.attempts < tasks.max_attempts
        THEN now() + make_interval(
            secs => least(:backoff_max, :backoff_base * power(2, greatest(tasks.attempts - 1, 0)))
        )
        ELSE tasks.run_after
    END,
    finished_at = CASE
        WHEN NOT tasks.cancel_requested AND tasks.attempts < tasks.max_attempts THEN NULL
        ELSE now()
    END,
    last_error = 'lease expired (held by ' || coalesce(tasks.lease_owner, '?') || ')',
    lease_expires_at = NULL
FROM expired
WHERE tasks.id = expired.id
RETURNING tasks.id, tasks.tenant_id, tasks.state, tasks.attempts, tasks.run_after

-- get: one task by id
SELECT * FROM tasks WHERE id = :id

-- counts: tasks by tenant, queue and state, with the oldest queued task's age
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
WHERE state IN ('succeeded', 'failed', 'cancelled')
  AND finished_at < now() - make_interval(secs => :older_than_seconds)
RETURNING id

-- _fair_rank: the tenants with queued work, ranked for fairness (docs/queue.md "Fairness"); ends in ranked
waiting(tenant_id) AS (
    (
        SELECT t.tenant_id FROM tasks t
        WHERE t.state = 'queued' AND t.queue = :queue
        ORDER BY t.tenant_id
        LIMIT 1
    )
    UNION ALL
    SELECT (
        SELECT t.tenant_id FROM tasks t
        WHERE t.state = 'queued' AND t.queue = :queue AND t.tenant_id > w.tenant_id
        ORDER BY t.tenant_id
        LIMIT 1
    )
    FROM waiting w
    WHERE w.tenant_id IS NOT NULL
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
            ORDER BY t.priority, t.id
            LIMIT 1
        ) AS head
    FROM waiting w
    WHERE w.tenant_id IS NOT NULL
)

-- _pick_one: after _fair_rank, the next task of the first tenant in rank order whose head is free; ends in picked(id). Locks nothing before before_pick(n) has run (see _lock_order)
, picked AS (
    SELECT c.id
    FROM (
        SELECT tenant_id, running, last_started, head FROM ranked
        WHERE (SELECT n FROM before_pick) >= 0
        ORDER BY running, last_started NULLS FIRST, head
    ) r
    CROSS JOIN LATERAL (
        SELECT t.id FROM tasks t
        WHERE t.state = 'queued' AND t.queue = :queue AND t.tenant_id = r.tenant_id
          AND t.run_after <= now()
        ORDER BY t.priority, t.id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ) c
    LIMIT 1
)

-- _pick_many: after _fair_rank, up to :batch tasks, interleaved across the first :batch tenants in rank order; ends in picked(id, ord). Locks nothing before before_pick(n) has run (see _lock_order)
, top AS (
    SELECT
        tenant_id,
        row_number() OVER (ORDER BY running, last_started NULLS FIRST, head) AS rank
    FROM ranked
    WHERE (SELECT n FROM before_pick) >= 0
    ORDER BY running, last_started NULLS FIRST, head
    LIMIT :batch
),
share AS (
    -- each of the T tenants may give up to (batch - T + 1) tasks: the batch fills
    -- whenever they have that many due, and at most T * (batch - T + 1) rows are locked
    SELECT :batch - count(*) + 1 AS n FROM top
),
picked AS (
    SELECT c.id, row_number() OVER (ORDER BY c.k, top.rank) AS ord
    FROM top
    CROSS JOIN share
    CROSS JOIN LATERAL (
        SELECT l.id, row_number() OVER (ORDER BY l.priority, l.id) AS k
        FROM (
            SELECT t.id, t.priority FROM tasks t
            WHERE t.state = 'queued' AND t.queue = :queue AND t.tenant_id = top.tenant_id
              AND t.run_after <= now()
            ORDER BY t.priority, t.id
            LIMIT share.n
            FOR UPDATE SKIP LOCKED
        ) l
    ) c
    ORDER BY c.k, top.rank
    LIMIT :batch
)

-- _claim_set: what claiming a task writes
UPDATE tasks SET
    state = 'running',
    attempts = tasks.attempts + 1,
    lease_owner = :owner,
    lease_token = :token,
    lease_expires_at = now() + make_interval(secs => :lease_seconds),
    started_at = now(),
    finished_at = NULL

-- _complete_many: record success for the held tasks in :done_ids, each fenced by its own lease token; returns the ids it recorded
UPDATE tasks SET
    state = 'succeeded',
    result = d.result,
    finished_at = now(),
    lease_expires_at = NULL
FROM unnest(
    CAST(:done_ids AS bigint[]), CAST(:done_tokens AS text[]), CAST(:results AS text[])
) AS d(id, token, result)
WHERE tasks.id = d.id AND tasks.lease_token = d.token AND tasks.state = 'running'
RETURNING tasks.id
