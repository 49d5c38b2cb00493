-- Tenants: where tenants live, keyed by id. It has no tenant_id column, so it is not a tenant
-- table and carries no row-level security: the runtime holds no privilege on it at all (foreign
-- keys into it are checked with the owner's rights, so the runtime does not need SELECT).
CREATE TABLE public.tenants (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL CHECK (btrim(name) <> ''),
    plan text NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'pro', 'enterprise')),
    created_at timestamptz NOT NULL DEFAULT now()
);
