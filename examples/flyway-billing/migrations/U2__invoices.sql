-- Flyway's undo of V2 (Flyway Teams runs it on `flyway undo`). rlsgate never applies undo
-- migrations: if it did, V3 would fail on the missing tables.
DROP TABLE public.invoice_lines;
DROP TABLE public.invoices;
