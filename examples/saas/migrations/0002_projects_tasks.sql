-- Projects and their tasks. UNIQUE (tenant_id, id) on projects lets tasks reference a project
-- together with its tenant, so a task can never point at another tenant's project. Unique keys
-- are tenant-scoped (a global one would tell a tenant that another holds a value).
CREATE TABLE public.projects (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    slug varchar(64) NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9-]*$'),
    name text NOT NULL CHECK (btrim(name) <> ''),
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
    budget_cents bigint NOT NULL CHECK (budget_cents >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT projects_tenant_slug UNIQUE (tenant_id, slug),
    CONSTRAINT projects_tenant_id UNIQUE (tenant_id, id)
);

CREATE TYPE public.task_priority AS ENUM ('low', 'normal', 'high', 'urgent');

CREATE TABLE public.tasks (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    project_id uuid NOT NULL,
    title varchar(200) NOT NULL CHECK (btrim(title) <> ''),
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    priority public.task_priority NOT NULL,
    estimate_minutes integer CHECK (estimate_minutes > 0),
    due_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tasks_project FOREIGN KEY (tenant_id, project_id)
        REFERENCES public.projects (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX tasks_tenant_project ON public.tasks (tenant_id, project_id);

-- Keeps updated_at current. A trigger fires without EXECUTE on its function, so nobody needs it:
-- PostgreSQL grants EXECUTE on a new function to PUBLIC, revoke it.
CREATE FUNCTION public.touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = public, pg_temp
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
REVOKE EXECUTE ON FUNCTION public.touch_updated_at() FROM PUBLIC;

CREATE TRIGGER tasks_touch_updated_at
    BEFORE UPDATE ON public.tasks
    FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();
