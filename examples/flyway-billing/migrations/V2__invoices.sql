-- Invoices and their lines. Invoice numbers are unique per organization, not globally, so one
-- organization cannot learn another's numbering from a unique violation. A line references its
-- invoice together with the organization (UNIQUE (org_id, id) on invoices).
CREATE TABLE public.invoices (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id integer NOT NULL REFERENCES public.organizations (id) ON DELETE CASCADE,
    number text NOT NULL,
    status text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'issued', 'paid', 'void')),
    issued_on date,
    due_on date,
    CONSTRAINT invoices_org_number UNIQUE (org_id, number),
    CONSTRAINT invoices_org_id UNIQUE (org_id, id),
    CONSTRAINT invoices_due_after_issue CHECK (due_on IS NULL OR issued_on IS NULL OR due_on >= issued_on)
);

CREATE TABLE public.invoice_lines (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id integer NOT NULL,
    invoice_id uuid NOT NULL,
    description text NOT NULL,
    quantity integer NOT NULL CHECK (quantity > 0),
    unit_cents bigint NOT NULL CHECK (unit_cents >= 0),
    CONSTRAINT invoice_lines_invoice FOREIGN KEY (org_id, invoice_id)
        REFERENCES public.invoices (org_id, id) ON DELETE CASCADE
);
