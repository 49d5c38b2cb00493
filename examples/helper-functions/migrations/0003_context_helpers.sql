-- The tenant context, read through helpers in a schema of their own: a PL/pgSQL function that
-- reads the setting (NULL when unset or emptied) and a SQL one that casts it.
CREATE SCHEMA app;

CREATE FUNCTION app.tenant_setting() RETURNS text
    LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN nullif(current_setting('app.tenant', true), '');
END
$$;

CREATE FUNCTION app.current_tenant() RETURNS uuid
    LANGUAGE sql STABLE AS $$ SELECT app.tenant_setting()::uuid $$;
