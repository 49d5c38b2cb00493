-- Contacts (tenant column `workspace`), deals (tenant column `owner_workspace`) and notes
-- (`workspace`). The composite foreign keys carry the tenant column, so a deal or a note can
-- only point at a contact of its own workspace. Unique keys are workspace-scoped.
CREATE TABLE public.contacts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace text NOT NULL REFERENCES public.workspaces (slug) ON DELETE CASCADE,
    full_name varchar(160) NOT NULL CHECK (btrim(full_name) <> ''),
    email varchar(254) CHECK (email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
    phone varchar(32),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT contacts_workspace_email UNIQUE (workspace, email),
    CONSTRAINT contacts_workspace_id UNIQUE (workspace, id)
);

CREATE TABLE public.deals (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_workspace text NOT NULL REFERENCES public.workspaces (slug) ON DELETE CASCADE,
    contact_id uuid NOT NULL,
    title text NOT NULL CHECK (btrim(title) <> ''),
    stage text NOT NULL DEFAULT 'lead' CHECK (stage IN ('lead', 'qualified', 'won', 'lost')),
    amount_cents bigint NOT NULL CHECK (amount_cents >= 0),
    currency char(3) NOT NULL DEFAULT 'EUR' CHECK (currency ~ '^[A-Z]{3}$'),
    closes_on date,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT deals_contact FOREIGN KEY (owner_workspace, contact_id)
        REFERENCES public.contacts (workspace, id) ON DELETE CASCADE
);

CREATE TYPE public.note_kind AS ENUM ('call', 'email', 'meeting', 'memo');

CREATE TABLE public.notes (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace text NOT NULL REFERENCES public.workspaces (slug) ON DELETE CASCADE,
    contact_id uuid,
    kind public.note_kind NOT NULL,
    body text NOT NULL CHECK (char_length(body) <= 10000),
    attributes jsonb NOT NULL CHECK (jsonb_typeof(attributes) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notes_contact FOREIGN KEY (workspace, contact_id)
        REFERENCES public.contacts (workspace, id) ON DELETE CASCADE
);

CREATE INDEX deals_owner_contact ON public.deals (owner_workspace, contact_id);
CREATE INDEX notes_workspace_contact ON public.notes (workspace, contact_id);
