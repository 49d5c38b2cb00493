-- Runs outside a transaction: V5__invoice_status_index.sql.conf sets Flyway's
-- executeInTransaction=false, which rlsgate honours. CREATE INDEX CONCURRENTLY refuses to run
-- inside a transaction, and builds the index without blocking writes to invoices.
CREATE INDEX CONCURRENTLY invoices_org_status ON public.invoices (org_id, status, due_on);
