-- The dead-letter queue: one row per job that failed for good. tenant_id has no foreign key: a
-- failure for a tenant that no longer exists must still be recorded. The runtime may record a
-- failure and read its tenant's failures, never alter or erase one (0006).
CREATE TABLE public.failed_jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid NOT NULL,
    job text NOT NULL CHECK (btrim(job) <> ''),
    error text NOT NULL CHECK (char_length(error) <= 2000),
    attempts integer NOT NULL DEFAULT 1 CHECK (attempts >= 1),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX failed_jobs_tenant ON public.failed_jobs (tenant_id, created_at);

-- Open tasks with their project. security_invoker (PostgreSQL 15+): the view reads tasks and
-- projects with the privileges, and under the policies, of whoever queries it; without it the
-- view would read them as its owner.
CREATE VIEW public.open_tasks WITH (security_invoker = true) AS
SELECT t.tenant_id, t.id AS task_id, t.project_id, p.slug AS project_slug,
       t.title, t.priority, t.due_at
FROM public.tasks AS t
JOIN public.projects AS p ON p.tenant_id = t.tenant_id AND p.id = t.project_id
WHERE t.status = 'open';
