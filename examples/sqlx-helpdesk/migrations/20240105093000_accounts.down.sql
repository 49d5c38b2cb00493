DROP TABLE public.accounts;
