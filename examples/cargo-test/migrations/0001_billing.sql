CREATE SCHEMA billing;
GRANT USAGE ON SCHEMA billing TO billing_api;

CREATE TABLE billing.orgs (
    slug text PRIMARY KEY,
    name text NOT NULL
);

CREATE TABLE billing.invoices (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org text NOT NULL REFERENCES billing.orgs (slug),
    number text NOT NULL,
    total_cents bigint NOT NULL CHECK (total_cents >= 0),
    UNIQUE (org, number)
);
