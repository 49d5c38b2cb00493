-- Orgs: where tenants live, keyed by a bigint the application assigns. No org_id column, so not
-- a tenant table; the runtime holds no privilege on it.
CREATE TABLE public.orgs (
    id bigint PRIMARY KEY CHECK (id > 0),
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
