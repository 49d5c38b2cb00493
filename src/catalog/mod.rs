//! Catalog reads shared by the checks: the relations of the subject's schemas and what the
//! runtime can do with them. Always read as the oracle (a superuser), about the runtime role.

use tokio_postgres::Client;

pub mod discovery;
pub mod identity;
pub mod keys;
pub mod policies;
pub mod privileges;

use crate::error::{Error, Result};
use crate::subject::Subject;

/// A relation of the subject's schemas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Schema-qualified, quoted where needed (`public.llm_api_calls`).
    pub name: String,
    /// `pg_class.relkind`: `r` table, `p` partitioned, `v` view, `m` materialized view, `f`
    /// foreign table.
    pub kind: char,
    /// Its tenant column: the first of the subject's tenant columns it has, if any.
    pub tenant_column: Option<String>,
    /// Whether it is a partition of another table.
    pub is_partition: bool,
    /// Row-level security enabled.
    pub rls_enabled: bool,
    /// Row-level security forced (the owner is filtered too).
    pub rls_forced: bool,
    /// The owner's role name.
    pub owner: String,
    /// Whether the runtime can SELECT from it.
    pub runtime_can_select: bool,
    /// Whether the runtime can INSERT into it.
    pub runtime_can_insert: bool,
    /// Whether the runtime can UPDATE it.
    pub runtime_can_update: bool,
    /// Whether the runtime can DELETE from it.
    pub runtime_can_delete: bool,
    /// Whether a view is declared `security_invoker` (PostgreSQL 15+).
    pub security_invoker: bool,
    /// The columns an INSERT may name, quoted, in order (generated columns left out).
    pub insertable_columns: Vec<String>,
    /// Whether a column is `GENERATED ALWAYS AS IDENTITY` (an INSERT naming it needs
    /// `OVERRIDING SYSTEM VALUE`).
    pub identity_always: bool,
}

impl Relation {
    /// Whether the relation holds tenant data (it has a tenant column).
    pub fn is_tenant_relation(&self) -> bool {
        self.tenant_column.is_some()
    }

    /// The tenant column, quoted for SQL (empty when the relation has none).
    pub fn tenant_column_sql(&self) -> String {
        self.tenant_column
            .as_deref()
            .map(crate::sql::quote_ident)
            .unwrap_or_default()
    }

    /// An INSERT of a copy of a row given as JSON text in `$1` (`row_to_json` of a row of this
    /// relation): every column an INSERT may name, generated ones left to the server, identity
    /// values kept (`OVERRIDING SYSTEM VALUE`), so that only the policies, privileges, keys,
    /// checks and triggers under test can refuse it.
    pub fn copy_row_sql(&self) -> String {
        let columns = self.insertable_columns.join(", ");
        format!(
            "INSERT INTO {name} ({columns}){overriding} SELECT {columns} FROM json_populate_record(NULL::{name}, $1::text::json)",
            name = self.name,
            overriding = if self.identity_always {
                " OVERRIDING SYSTEM VALUE"
            } else {
                ""
            },
        )
    }
}

/// A tenant table `name` (tenant column `tenant_id`, RLS enabled and forced, owned by
/// `migration_owner`) the runtime can SELECT and INSERT: what unit tests start from.
#[cfg(test)]
pub(crate) fn test_table(name: &str) -> Relation {
    Relation {
        name: name.into(),
        kind: 'r',
        tenant_column: Some("tenant_id".into()),
        is_partition: false,
        rls_enabled: true,
        rls_forced: true,
        owner: "migration_owner".into(),
        runtime_can_select: true,
        runtime_can_insert: true,
        runtime_can_update: false,
        runtime_can_delete: false,
        security_invoker: false,
        insertable_columns: Vec::new(),
        identity_always: false,
    }
}

/// Every table, partitioned table, view, materialized view and foreign table of the subject's
/// schemas (an extension's aside), ordered by name, with what the runtime can do with each.
///
/// # Errors
/// A database error when the catalog cannot be read.
pub async fn relations(oracle: &Client, subject: &Subject) -> Result<Vec<Relation>> {
    let rows = oracle
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname), c.relkind::text,
                    (SELECT a.attname::text FROM unnest($2::text[]) WITH ORDINALITY AS u(name, i)
                     JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = u.name
                                        AND a.attnum > 0 AND NOT a.attisdropped
                     ORDER BY u.i LIMIT 1),
                    c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner)::text,
                    r.rolname IS NOT NULL AND has_table_privilege(r.oid, c.oid, 'SELECT'),
                    r.rolname IS NOT NULL AND has_table_privilege(r.oid, c.oid, 'INSERT'),
                    r.rolname IS NOT NULL AND has_table_privilege(r.oid, c.oid, 'UPDATE'),
                    r.rolname IS NOT NULL AND has_table_privilege(r.oid, c.oid, 'DELETE'),
                    coalesce(c.reloptions::text[] && ARRAY['security_invoker=true', 'security_invoker=on', 'security_invoker=1'], false),
                    c.relispartition,
                    coalesce((SELECT array_agg(quote_ident(a.attname) ORDER BY a.attnum)
                              FROM pg_attribute a
                              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                                AND a.attgenerated = ''), '{}'),
                    EXISTS (SELECT 1 FROM pg_attribute a
                            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                              AND a.attidentity = 'a')
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_roles r ON r.rolname = $3
             WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                               AND d.objid = c.oid AND d.deptype = 'e')
             ORDER BY 1",
            &[&subject.schemas, &subject.tenant_columns, &subject.runtime_role],
        )
        .await
        .map_err(|e| Error::database("reading the relations of the catalog", e))?;
    Ok(rows
        .iter()
        .filter(|r| subject.covers(r.get(0)))
        .map(|r| Relation {
            name: r.get(0),
            kind: r.get::<_, String>(1).chars().next().unwrap_or('?'),
            tenant_column: r.get(2),
            is_partition: r.get(11),
            rls_enabled: r.get(3),
            rls_forced: r.get(4),
            owner: r.get(5),
            runtime_can_select: r.get(6),
            runtime_can_insert: r.get(7),
            runtime_can_update: r.get(8),
            runtime_can_delete: r.get(9),
            security_invoker: r.get(10),
            insertable_columns: r.get(12),
            identity_always: r.get(13),
        })
        .collect())
}

/// The schemas of the database that may hold an application's relations: every schema but
/// the system's (`pg_catalog`, `information_schema`, `pg_toast`, temporary ones), by name.
///
/// # Errors
/// A database error when the catalog cannot be read.
pub async fn user_schemas(oracle: &Client) -> Result<Vec<String>> {
    Ok(oracle
        .query(
            "SELECT nspname::text FROM pg_namespace
             WHERE nspname NOT IN ('pg_catalog', 'information_schema')
               AND nspname NOT LIKE 'pg\\_%'
             ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| Error::database("reading the schemas", e))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The type of `relation`'s tenant column as `format_type` prints it (`uuid`, `bigint`,
/// `character varying(20)`), for casts in probes.
///
/// # Errors
/// A database error when the catalog cannot be read.
pub async fn tenant_column_type(client: &Client, relation: &Relation) -> Result<String> {
    Ok(client
        .query_one(
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
             WHERE a.attrelid = $1::text::regclass AND a.attname = $2",
            &[&relation.name, &relation.tenant_column],
        )
        .await
        .map_err(|e| Error::database("reading the tenant column's type", e))?
        .get(0))
}

/// SQL naming function `alias` (a `pg_proc` row; its schema joined as `n`) the way the privilege
/// matrix does: `public.f(uuid,integer)`, schema always written, whatever the search path.
pub fn function_name_sql(alias: &str) -> String {
    format!(
        "format('%I.%I(%s)', n.nspname, {alias}.proname,
                coalesce((SELECT string_agg(format_type(a.t, NULL), ',' ORDER BY a.o)
                          FROM unnest({alias}.proargtypes) WITH ORDINALITY AS a(t, o)), ''))"
    )
}

/// The server's version number (`server_version_num`), e.g. 150012.
///
/// # Errors
/// A database error when the setting cannot be read.
pub async fn server_version_num(client: &Client) -> Result<i32> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| Error::database("reading server_version_num", e))?;
    Ok(row.get(0))
}
