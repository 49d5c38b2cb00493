-- Breaks the invoicing example on purpose, in two independent ways; ../../README.md says which
-- invariant catches which. It runs after V5 and before the repeatable R__invoice_totals.sql.

-- (a) Row-level security switched off on invoice lines: every organization's lines are
-- readable and writable in any organization's context, and with no context at all.
ALTER TABLE public.invoice_lines DISABLE ROW LEVEL SECURITY;

-- (b) The runtime may create objects in schema public: DDL the runtime should never hold.
GRANT CREATE ON SCHEMA public TO billing_app;
