-- Organizations: where tenants live, keyed by an integer the application assigns. No org_id
-- column, so not a tenant table; the runtime holds no privilege on it.
CREATE TABLE public.organizations (
    id integer PRIMARY KEY CHECK (id > 0),
    name text NOT NULL,
    currency char(3) NOT NULL DEFAULT 'EUR' CHECK (currency IN ('EUR', 'USD', 'GBP'))
);
