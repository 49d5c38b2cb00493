-- The flaw: an UPDATE policy without WITH CHECK and a USING that forgot the organisation, so
-- the API can move any invoice into its own organisation (or another's).
DROP POLICY invoices_update ON billing.invoices;
CREATE POLICY invoices_update ON billing.invoices FOR UPDATE TO billing_api USING (true);
