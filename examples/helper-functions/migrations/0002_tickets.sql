CREATE TYPE public.ticket_priority AS ENUM ('low', 'normal', 'urgent');
CREATE DOMAIN public.title AS varchar(120) CHECK (length(VALUE) > 0);

CREATE TABLE public.tickets (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES public.tenants (id),
    title public.title NOT NULL,
    priority public.ticket_priority NOT NULL,
    estimate_hours numeric(5, 2) NOT NULL CHECK (estimate_hours >= 0),
    status varchar(12) NOT NULL
        CHECK (status = ANY (ARRAY['open'::varchar, 'pending'::varchar, 'closed'::varchar])),
    UNIQUE (tenant_id, id)
);

-- A comment stays in its ticket's tenant: the foreign key includes the tenant column.
CREATE TABLE public.comments (
    id uuid PRIMARY KEY DEFAULT public.uuid_generate_v4(),
    tenant_id uuid NOT NULL,
    ticket_id bigint NOT NULL,
    body text NOT NULL,
    FOREIGN KEY (tenant_id, ticket_id) REFERENCES public.tickets (tenant_id, id)
);

-- Written by a billing service that logs in as the owner: the runtime has no privilege on it,
-- and row-level security with no policy denies everything else (deny-all).
CREATE TABLE public.billing_events (
    id uuid PRIMARY KEY DEFAULT public.uuid_generate_v4(),
    tenant_id uuid NOT NULL REFERENCES public.tenants (id),
    cents integer NOT NULL
);

-- The dead-letter table: status is listed, not defaulted.
CREATE TABLE public.failed_jobs (
    id uuid PRIMARY KEY DEFAULT public.uuid_generate_v4(),
    tenant_id uuid,
    job text NOT NULL,
    error text NOT NULL,
    status varchar(16) NOT NULL
        CHECK (status = ANY (ARRAY['pending'::varchar, 'retried'::varchar, 'dropped'::varchar]))
);
