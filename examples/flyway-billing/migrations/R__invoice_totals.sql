-- A repeatable migration: Flyway (and rlsgate) applies it after every versioned one, and again
-- whenever its text changes, so it is written to be re-run (CREATE OR REPLACE).
-- security_invoker (PostgreSQL 15+): the view reads invoices and lines under the querying
-- role's policies, so each organization sees only its own totals.
CREATE OR REPLACE VIEW public.invoice_totals WITH (security_invoker = true) AS
    SELECT i.org_id,
           i.id AS invoice_id,
           i.number,
           i.status,
           coalesce(sum(l.quantity * l.unit_cents), 0)::bigint AS total_cents
    FROM public.invoices AS i
    LEFT JOIN public.invoice_lines AS l ON l.org_id = i.org_id AND l.invoice_id = i.id
    GROUP BY i.org_id, i.id, i.number, i.status;

GRANT SELECT ON public.invoice_totals TO billing_app;
