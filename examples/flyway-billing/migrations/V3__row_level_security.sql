-- Row-level security, enabled and FORCED on both tenant tables, with policies for PUBLIC: the
-- owner billing_owner is filtered too, so nothing it owns (the view of R__invoice_totals.sql
-- reads as its invoker anyway) can read across organizations. The context is the GUC
-- billing.org_id; nullif(.., '') turns the '' an ended transaction-local setting leaves into
-- NULL (no rows, no writes) instead of an error on ''::integer.
ALTER TABLE public.invoices ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.invoices FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON public.invoices
    USING (org_id = nullif(current_setting('billing.org_id', true), '')::integer)
    WITH CHECK (org_id = nullif(current_setting('billing.org_id', true), '')::integer);

ALTER TABLE public.invoice_lines ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.invoice_lines FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON public.invoice_lines
    USING (org_id = nullif(current_setting('billing.org_id', true), '')::integer)
    WITH CHECK (org_id = nullif(current_setting('billing.org_id', true), '')::integer);
