-- Accounts: where tenants live, keyed by a uuid. No account_id column, so not a tenant table;
-- the runtime holds no privilege on it.
CREATE TABLE public.accounts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL CHECK (btrim(name) <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);
