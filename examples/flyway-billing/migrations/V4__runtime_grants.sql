-- The runtime's table privileges: DML on invoices and their lines. Nothing on organizations,
-- no TRUNCATE, REFERENCES or TRIGGER, no sequences (ids are uuid defaults). The view's SELECT
-- is granted where the view is defined (R__invoice_totals.sql).
GRANT USAGE ON SCHEMA public TO billing_app;

GRANT SELECT, INSERT, UPDATE, DELETE ON public.invoices, public.invoice_lines TO billing_app;
