DROP TABLE public.ticket_comments;
DROP TABLE public.tickets;
