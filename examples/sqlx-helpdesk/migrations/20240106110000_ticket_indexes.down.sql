-- no-transaction
DROP INDEX CONCURRENTLY IF EXISTS public.ticket_comments_ticket;
DROP INDEX CONCURRENTLY IF EXISTS public.tickets_account_status;
