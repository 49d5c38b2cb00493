-- One policy per command; the organisation comes from the request's setting (missing_ok: no
-- setting, no rows).
ALTER TABLE billing.invoices ENABLE ROW LEVEL SECURITY;
ALTER TABLE billing.invoices FORCE ROW LEVEL SECURITY;

CREATE POLICY invoices_select ON billing.invoices FOR SELECT TO billing_api
    USING (org = current_setting('billing.org', true));
CREATE POLICY invoices_insert ON billing.invoices FOR INSERT TO billing_api
    WITH CHECK (org = current_setting('billing.org', true));
CREATE POLICY invoices_update ON billing.invoices FOR UPDATE TO billing_api
    USING (org = current_setting('billing.org', true))
    WITH CHECK (org = current_setting('billing.org', true));
CREATE POLICY invoices_delete ON billing.invoices FOR DELETE TO billing_api
    USING (org = current_setting('billing.org', true));

GRANT SELECT, INSERT, UPDATE, DELETE ON billing.invoices TO billing_api;
