-- The dead-letter queue. The id is supplied by the writer (UUIDv5 of "<task_id>:<task_name>") so a
-- DLQ write is idempotent. tenant_id has no foreign key: a failure for a tenant that does not
-- exist must still be recorded.
CREATE TABLE worker_failed_jobs (
    id uuid PRIMARY KEY,
    task_id text NOT NULL,
    task_name text NOT NULL,
    queue text NOT NULL DEFAULT 'llm',
    worker text NOT NULL,
    task_args jsonb NOT NULL DEFAULT '[]'::jsonb,
    task_kwargs jsonb NOT NULL DEFAULT '{}'::jsonb,
    tenant_id uuid,
    error_type text NOT NULL,
    exception_class text NOT NULL,
    error_message text NOT NULL CHECK (char_length(error_message) <= 500),
    traceback text CHECK (char_length(traceback) <= 2000),
    retry_count integer NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'in_progress', 'resolved', 'abandoned')),
    correlation_id uuid,
    failed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX worker_failed_jobs_tenant ON worker_failed_jobs (tenant_id);
