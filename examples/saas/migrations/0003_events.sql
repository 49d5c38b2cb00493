-- An append-mostly event log, partitioned by year on created_at. The primary key of a
-- partitioned table must include the partition key. Partitions cover 2025 to 2027; anything
-- else lands in the DEFAULT partition. Row-level security is enabled and forced on the parent
-- (0005); the runtime is granted the parent only, so rows reach the partitions through it.
CREATE TABLE public.events (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    tenant_id uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    project_id uuid,
    kind text NOT NULL CHECK (char_length(kind) BETWEEN 1 AND 64),
    payload jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(payload) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id, created_at),
    CONSTRAINT events_project FOREIGN KEY (tenant_id, project_id)
        REFERENCES public.projects (tenant_id, id) ON DELETE CASCADE
) PARTITION BY RANGE (created_at);

CREATE TABLE public.events_2025 PARTITION OF public.events
    FOR VALUES FROM ('2025-01-01 00:00:00+00') TO ('2026-01-01 00:00:00+00');
CREATE TABLE public.events_2026 PARTITION OF public.events
    FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2027-01-01 00:00:00+00');
CREATE TABLE public.events_2027 PARTITION OF public.events
    FOR VALUES FROM ('2027-01-01 00:00:00+00') TO ('2028-01-01 00:00:00+00');
CREATE TABLE public.events_default PARTITION OF public.events DEFAULT;
