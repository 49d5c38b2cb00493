//! Seeding: rlsgate's own tenants, and a sentinel row of each of them in every tenant table,
//! with values that satisfy the columns' types, NOT NULL, CHECK, unique, partition and
//! foreign-key constraints (referenced rows are created as needed).
//!
//! Values come from the column's type and a counter (so they are unique); when an insert
//! fails on a CHECK or partition constraint, the literals of that constraint (or of the
//! partitions' bounds) are tried for its columns, one at a time. A table that cannot be seeded
//! is reported with the reason, never silently skipped.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use tokio_postgres::Client;
use uuid::Uuid;

use super::shape::{Column, Shape, key_expression, read_shape};
use crate::catalog::Relation;
use crate::error::{Error, Result};
use crate::refusal::{Constraint, Refusal, Refused};
use crate::sql::quote_ident;
use crate::subject::Subject;

/// How many inserts a row may take before the table is declared unseedable.
const ATTEMPTS: usize = 16;
/// How deep foreign keys are followed.
const MAX_DEPTH: usize = 8;

/// Why no row could be written: a reason for people, and the database's last refusal when it
/// gave one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotSeeded {
    /// The database's last refusal, if a statement reached it.
    pub refused: Option<Refused>,
    /// Why, for the evidence.
    pub reason: String,
}

impl NotSeeded {
    fn because(reason: String) -> Self {
        Self {
            refused: None,
            reason,
        }
    }

    /// No generated value was accepted; `last` is the database's last word.
    fn refused(last: Option<Refused>) -> Self {
        let text = last.as_ref().map_or_else(String::new, |r| {
            format!(
                "{} (SQLSTATE {})",
                r.message,
                r.sqlstate.as_deref().unwrap_or("none")
            )
        });
        Self {
            reason: format!("no generated row was accepted: {text}"),
            refused: last,
        }
    }

    /// True when a privilege or a row policy refused the row.
    pub fn refused_by_privilege_or_policy(&self) -> bool {
        self.refused
            .as_ref()
            .is_some_and(|r| r.kind.is_refused_by_privilege_or_policy())
    }
}

impl std::fmt::Display for NotSeeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// The result of writing a row: the row, or why not.
pub type Seeded<T> = std::result::Result<T, NotSeeded>;

/// A tenant rlsgate created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeededTenant {
    /// The tenant id as text (what the tenant columns hold and the context is set to).
    pub id: String,
    /// `A`, `B`, ...
    pub label: String,
}

/// Seeds a database as the oracle and remembers everything it created.
pub struct Seeder {
    shapes: BTreeMap<String, Shape>,
    tenant_relations: BTreeMap<String, String>,
    /// The tenant tables (partitions aside) and their tenant columns: where a tenant id
    /// rlsgate generates must not be in use already.
    tenant_tables: Vec<(String, String)>,
    counter: u64,
    tag: String,
    namespace: Uuid,
    /// Sentinel rows by (table, tenant id): JSON object.
    rows: BTreeMap<(String, String), Map<String, Value>>,
    failures: BTreeMap<String, String>,
    /// The tenant table and its key column, once tenants are created there.
    tenant_key: Option<(String, String)>,
    /// The tenants created.
    pub tenants: Vec<SeededTenant>,
}

impl std::fmt::Debug for Seeder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seeder")
            .field("tenants", &self.tenants)
            .field("failures", &self.failures)
            .finish()
    }
}

impl Seeder {
    /// A seeder for `relations` (their tenant columns decide which are tenant tables); every
    /// identifier it generates derives from `namespace`.
    pub fn new(relations: &[Relation], namespace: Uuid) -> Self {
        Self {
            shapes: BTreeMap::new(),
            tenant_tables: relations
                .iter()
                .filter(|r| matches!(r.kind, 'r' | 'p') && !r.is_partition)
                .filter_map(|r| r.tenant_column.clone().map(|c| (r.name.clone(), c)))
                .collect(),
            tenant_relations: relations
                .iter()
                .filter_map(|r| r.tenant_column.clone().map(|c| (r.name.clone(), c)))
                .collect(),
            counter: 0,
            tag: namespace.simple().to_string()[..6].to_string(),
            namespace,
            rows: BTreeMap::new(),
            failures: BTreeMap::new(),
            tenant_key: None,
            tenants: Vec::new(),
        }
    }

    /// Tables that could not be seeded, with the reason.
    pub fn failures(&self) -> &BTreeMap<String, String> {
        &self.failures
    }

    /// Whether `table` has a sentinel row for every tenant.
    pub fn seeded(&self, table: &str) -> bool {
        !self.tenants.is_empty()
            && self
                .tenants
                .iter()
                .all(|t| self.rows.contains_key(&(table.to_string(), t.id.clone())))
    }

    /// Create `count` tenants: rows of the tenant table (`table`, keyed by `key`) when the
    /// project has one, else ids of the tenant columns' type. An id already in use (in the
    /// tenant table or any tenant table's tenant column) is passed over for the next one.
    ///
    /// # Errors
    /// A config error when a tenant row cannot be created (the reason names the table).
    pub async fn create_tenants(
        &mut self,
        oracle: &Client,
        subject: &Subject,
        table: Option<(&str, &str)>,
        count: usize,
    ) -> Result<()> {
        self.tenant_key = table.map(|(t, k)| (t.to_string(), k.to_string()));
        let mut next = 0;
        for i in 0..count {
            let label = crate::workload::tenant_label(i);
            let id = match table {
                Some((table, key)) => {
                    let shape = self.shape(oracle, table).await?;
                    let Some(column) = shape.columns.iter().find(|c| c.name == key).cloned() else {
                        return Err(Error::config(format!(
                            "tenant.key: the tenant table {table} has no column {key}"
                        )));
                    };
                    let mut fixed = Map::new();
                    fixed.insert(
                        key.to_string(),
                        self.unused_tenant_value(oracle, &column, &mut next).await?,
                    );
                    let row = self
                        .insert_with_parents(oracle, subject, table, None, fixed, 0)
                        .await?
                        .map_err(|why| {
                            Error::config(format!(
                                "cannot create a tenant in {table}: {why}; check tenant.table and tenant.key"
                            ))
                        })?;
                    text_of(&row[key])
                }
                None => {
                    let (table, column) = self
                        .tenant_relations
                        .iter()
                        .next()
                        .map(|(t, c)| (t.clone(), c.clone()))
                        .ok_or_else(|| {
                            Error::config("no tenant relation to take the tenant id's type from")
                        })?;
                    let shape = self.shape(oracle, &table).await?;
                    let column = shape
                        .columns
                        .iter()
                        .find(|c| c.name == column)
                        .cloned()
                        .expect("the tenant column is a column");
                    text_of(&self.unused_tenant_value(oracle, &column, &mut next).await?)
                }
            };
            self.tenants.push(SeededTenant { id, label });
        }
        Ok(())
    }

    /// Insert a sentinel row of every tenant into `table` (a tenant table). A failure is
    /// remembered (see [`Seeder::failures`]), not returned.
    ///
    /// # Errors
    /// A database error when the catalog cannot be read.
    pub async fn seed_table(
        &mut self,
        oracle: &Client,
        subject: &Subject,
        table: &str,
    ) -> Result<()> {
        for tenant in self.tenants.clone() {
            if let Err(why) = self.sentinel(oracle, subject, table, &tenant.id, 0).await? {
                self.failures
                    .entry(table.to_string())
                    .or_insert(why.to_string());
                return Ok(());
            }
        }
        Ok(())
    }

    /// The sentinel row of `tenant` in `table`, inserting it (and what it references) first.
    async fn sentinel(
        &mut self,
        oracle: &Client,
        subject: &Subject,
        table: &str,
        tenant: &str,
        depth: usize,
    ) -> Result<Seeded<Map<String, Value>>> {
        let key = (table.to_string(), tenant.to_string());
        if let Some(row) = self.rows.get(&key) {
            return Ok(Ok(row.clone()));
        }
        if let Some(why) = self.failures.get(table) {
            return Ok(Err(NotSeeded::because(why.clone())));
        }
        let row = self
            .insert_with_parents(oracle, subject, table, Some(tenant), Map::new(), depth)
            .await?;
        if let Ok(row) = &row {
            self.rows.insert(key, row.clone());
        }
        Ok(row)
    }

    /// The values of a new row of `table` for `tenant` (None: a shared table): the tenant
    /// column, foreign keys pointing at rows that exist (created as needed), `fixed`, then
    /// every NOT NULL column without a default. Referenced rows are inserted through the oracle.
    async fn values(
        &mut self,
        oracle: &Client,
        subject: &Subject,
        table: &str,
        tenant: Option<&str>,
        fixed: Map<String, Value>,
        depth: usize,
    ) -> Result<Seeded<Map<String, Value>>> {
        if depth > MAX_DEPTH {
            return Ok(Err(NotSeeded::because(format!(
                "foreign keys from {table} nest deeper than {MAX_DEPTH} levels (a cycle?)"
            ))));
        }
        let shape = self.shape(oracle, table).await?;
        let mut values = fixed;
        let tenant_column = self.tenant_relations.get(table).cloned();
        if let (Some(column), Some(tenant)) = (&tenant_column, tenant) {
            values.insert(column.clone(), Value::String(tenant.to_string()));
        }
        for fk in &shape.foreign_keys {
            let needed = fk.columns.iter().any(|c| {
                tenant_column.as_deref() == Some(c.as_str())
                    || shape
                        .columns
                        .iter()
                        .any(|col| &col.name == c && col.not_null)
            });
            let only_tenant = fk
                .columns
                .iter()
                .all(|c| Some(c.as_str()) == tenant_column.as_deref());
            if !needed || only_tenant || fk.table == table {
                continue;
            }
            let referenced = if self.tenant_relations.contains_key(&fk.table) {
                match tenant {
                    Some(t) => {
                        match Box::pin(self.sentinel(oracle, subject, &fk.table, t, depth + 1))
                            .await?
                        {
                            Ok(row) => row,
                            Err(why) => {
                                return Ok(Err(NotSeeded::because(format!(
                                    "it references {}, which could not be seeded: {why}",
                                    fk.table
                                ))));
                            }
                        }
                    }
                    None => {
                        return Ok(Err(NotSeeded::because(format!(
                            "a shared table references the tenant table {}",
                            fk.table
                        ))));
                    }
                }
            } else {
                match Box::pin(self.shared_row(oracle, subject, &fk.table, depth + 1)).await? {
                    Ok(row) => row,
                    Err(why) => {
                        return Ok(Err(NotSeeded::because(format!(
                            "it references {}, which could not be seeded: {why}",
                            fk.table
                        ))));
                    }
                }
            };
            for (column, target) in fk.columns.iter().zip(&fk.referenced) {
                if Some(column.as_str()) == tenant_column.as_deref() {
                    continue;
                }
                values.insert(
                    column.clone(),
                    referenced.get(target).cloned().unwrap_or(Value::Null),
                );
            }
        }
        for column in &shape.columns {
            if values.contains_key(&column.name)
                || column.generated
                || column.has_default
                || !column.not_null
            {
                continue;
            }
            // A string column a CHECK holds to a list of values (`IN (...)`, `= ANY (ARRAY[...])`,
            // whatever the string type): the first of them, so that even a row inserted once,
            // without retries (a probe's), passes it.
            if let Some(literal) = listed_value(&shape, column) {
                values.insert(column.name.clone(), Value::String(literal));
                continue;
            }
            self.counter += 1;
            match generate(column, self.counter, &self.tag, self.namespace) {
                Some(v) => {
                    values.insert(column.name.clone(), v);
                }
                None => {
                    return Ok(Err(NotSeeded::because(format!(
                        "cannot generate a value of type {} for its NOT NULL column {}",
                        column.type_name, column.name
                    ))));
                }
            }
        }
        Ok(Ok(values))
    }

    /// Any row of shared table `table`, inserting one when it is empty.
    async fn shared_row(
        &mut self,
        oracle: &Client,
        subject: &Subject,
        table: &str,
        depth: usize,
    ) -> Result<Seeded<Map<String, Value>>> {
        let row = oracle
            .query_opt(
                &format!("SELECT row_to_json(t)::text FROM {table} t LIMIT 1"),
                &[],
            )
            .await
            .map_err(|e| Error::database(format!("reading a row of {table}"), e))?;
        if let Some(row) = row {
            return Ok(Ok(parse_object(&row.get::<_, String>(0))));
        }
        self.insert_with_parents(oracle, subject, table, None, Map::new(), depth)
            .await
    }

    /// Insert a row of `table` as the oracle (values from [`Seeder::values`]), retrying with
    /// other values on CHECK, partition, unique and NOT NULL failures.
    async fn insert_with_parents(
        &mut self,
        oracle: &Client,
        subject: &Subject,
        table: &str,
        tenant: Option<&str>,
        fixed: Map<String, Value>,
        depth: usize,
    ) -> Result<Seeded<Map<String, Value>>> {
        let values = match self
            .values(oracle, subject, table, tenant, fixed, depth)
            .await?
        {
            Ok(v) => v,
            Err(why) => return Ok(Err(why)),
        };
        let inserted = self
            .insert(oracle, subject, table, tenant, values, true)
            .await?;
        Ok(inserted.map(|(row, _)| row))
    }

    /// Insert a row of `table` with `values` over `client` (in its own transaction, with the
    /// tenant context set to `tenant` so triggers and defaults that read it work), retrying
    /// with other values. Returns the inserted row and its key text (primary key, or the whole
    /// row; both empty without `returning`), or why no value worked.
    ///
    /// # Errors
    /// A database error when the transaction itself cannot be opened or ended.
    pub async fn insert(
        &mut self,
        client: &Client,
        subject: &Subject,
        table: &str,
        tenant: Option<&str>,
        values: Map<String, Value>,
        returning: bool,
    ) -> Result<Seeded<(Map<String, Value>, String)>> {
        let shape = self.shape(client, table).await?;
        let mut values = values;
        // What must not change on a retry: the tenant column, foreign-key columns (they point
        // at rows that exist) and the tenant table's key. Everything else was generated.
        let mut fixed: BTreeSet<String> = shape
            .foreign_keys
            .iter()
            .flat_map(|fk| fk.columns.iter().cloned())
            .collect();
        fixed.extend(self.tenant_relations.get(table).cloned());
        if let Some((t, key)) = &self.tenant_key
            && t == table
        {
            fixed.insert(key.clone());
        }
        let mut tried: BTreeMap<String, usize> = BTreeMap::new();
        let mut last: Option<Refused> = None;
        let mut last_retry: Vec<(String, Vec<String>)> = Vec::new();
        for _ in 0..ATTEMPTS {
            let result =
                try_insert(client, subject, table, &shape, tenant, &values, returning).await?;
            let error = match result {
                Ok(row) => return Ok(Ok(row)),
                Err(e) => e,
            };
            if error.as_db_error().is_none() {
                return Ok(Err(NotSeeded::because(format!(
                    "the insert failed: {error}"
                ))));
            }
            let refused = Refused::of(&error);
            last = Some(refused.clone());
            let retry: Vec<(String, Vec<String>)> = match refused.kind {
                Refusal::Constraint(Constraint::Unique) => {
                    // A unique key: new counter values for everything rlsgate generated.
                    for column in &shape.columns {
                        if values.contains_key(&column.name) && !fixed.contains(&column.name) {
                            self.counter += 1;
                            if let Some(v) =
                                generate(column, self.counter, &self.tag, self.namespace)
                            {
                                values.insert(column.name.clone(), v);
                            }
                        }
                    }
                    continue;
                }
                Refusal::Constraint(Constraint::NotNull) => {
                    let Some(name) = refused.column.as_deref() else {
                        break;
                    };
                    let Some(column) = shape.columns.iter().find(|c| c.name == name) else {
                        break;
                    };
                    self.counter += 1;
                    match generate(column, self.counter, &self.tag, self.namespace) {
                        Some(v) => values.insert(name.to_string(), v),
                        None => break,
                    };
                    continue;
                }
                Refusal::Constraint(Constraint::Check) => match refused
                    .constraint
                    .as_deref()
                    .and_then(|c| shape.checks.get(c))
                {
                    Some((columns, literals)) => columns
                        .iter()
                        .map(|c| (c.clone(), literals.clone()))
                        .collect(),
                    None => match &shape.partitions {
                        Some((columns, literals)) => columns
                            .iter()
                            .map(|c| (c.clone(), literals.clone()))
                            .collect(),
                        None => break,
                    },
                },
                // A literal that does not fit the column (too long, not of its type): the next.
                Refusal::InvalidValue if !last_retry.is_empty() => last_retry.clone(),
                _ => break,
            };
            last_retry = retry.clone();
            // Try the next literal for each column of the failing constraint.
            let mut changed = false;
            for (column, literals) in retry {
                if fixed.contains(&column) {
                    continue;
                }
                let n = tried.entry(column.clone()).or_default();
                if let Some(literal) = candidates(&literals).get(*n) {
                    values.insert(column.clone(), Value::String(literal.clone()));
                    *n += 1;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        Ok(Err(NotSeeded::refused(last)))
    }

    /// Every sentinel row of `tenant`, by table.
    pub fn sentinel_rows_of(&self, tenant: &str) -> Vec<(&str, &Map<String, Value>)> {
        self.rows
            .iter()
            .filter(|((_, t), _)| t == tenant)
            .map(|((table, _), row)| (table.as_str(), row))
            .collect()
    }

    /// The keys of `tenant`'s sentinel rows: in each tenant table, its primary key's value when
    /// the key is one column besides the tenant column. What a function taking a row id is
    /// called with.
    ///
    /// # Errors
    /// A database error when the catalog cannot be read.
    pub async fn row_keys(&mut self, oracle: &Client, tenant: &str) -> Result<Vec<String>> {
        let rows: Vec<(String, Map<String, Value>)> = self
            .sentinel_rows_of(tenant)
            .into_iter()
            .map(|(t, r)| (t.to_string(), r.clone()))
            .collect();
        let mut out = Vec::new();
        for (table, row) in rows {
            let shape = self.shape(oracle, &table).await?;
            let tenant_column = self.tenant_relations.get(&table);
            let key: Vec<&String> = shape
                .primary_key
                .iter()
                .filter(|c| Some(*c) != tenant_column)
                .collect();
            if let [column] = key.as_slice()
                && let Some(v) = row.get(column.as_str())
            {
                out.push(text_of(v));
            }
        }
        Ok(out)
    }

    /// A value of the type `type_name` (`pg_type.typname`, category `category`), for an
    /// argument rlsgate has no row to take it from.
    pub fn value_of_type(&mut self, type_name: &str, category: char) -> Option<Value> {
        self.counter += 1;
        let column = Column {
            name: String::new(),
            type_name: type_name.to_string(),
            category,
            not_null: true,
            has_default: false,
            generated: false,
            max_len: None,
            labels: Vec::new(),
            integer_digits: None,
        };
        generate(&column, self.counter, &self.tag, self.namespace)
    }

    /// Tenant `tenant`'s sentinel row of `table`, as inserted.
    pub fn sentinel_row(&self, table: &str, tenant: &str) -> Option<&Map<String, Value>> {
        self.rows.get(&(table.to_string(), tenant.to_string()))
    }

    /// Give `tenant`'s sentinel row of `table` a value in each of `columns` where it has none
    /// (NULL), as the oracle, so that a probe can aim at its values. Returns the row.
    ///
    /// # Errors
    /// A database error when the catalog cannot be read.
    pub async fn fill_sentinel(
        &mut self,
        oracle: &Client,
        table: &str,
        tenant: &str,
        columns: &[String],
    ) -> Result<Seeded<Map<String, Value>>> {
        let key = (table.to_string(), tenant.to_string());
        let Some(row) = self.rows.get(&key).cloned() else {
            return Ok(Err(NotSeeded::because(format!(
                "{table} has no sentinel row of {tenant}"
            ))));
        };
        let shape = self.shape(oracle, table).await?;
        let mut values = Map::new();
        for column in shape.columns.iter().filter(|c| columns.contains(&c.name)) {
            if row.get(&column.name).is_none_or(Value::is_null) {
                self.counter += 1;
                match generate(column, self.counter, &self.tag, self.namespace) {
                    Some(v) => values.insert(column.name.clone(), v),
                    None => {
                        return Ok(Err(NotSeeded::because(format!(
                            "cannot generate a value of type {} for {}",
                            column.type_name, column.name
                        ))));
                    }
                };
            }
        }
        if values.is_empty() {
            return Ok(Ok(row));
        }
        let list: Vec<String> = values.keys().map(|c| quote_ident(c)).collect();
        let list = list.join(", ");
        let sql = format!(
            "UPDATE {table} t SET ({list}) = (SELECT {list} FROM json_populate_record(NULL::{table}, $1::text::json))
             WHERE row_to_json(t)::jsonb = $2::text::jsonb RETURNING row_to_json(t)::text"
        );
        let updated = oracle
            .query_opt(
                &sql,
                &[
                    &Value::Object(values).to_string(),
                    &Value::Object(row).to_string(),
                ],
            )
            .await;
        Ok(match updated {
            Ok(Some(r)) => {
                let row = parse_object(&r.get::<_, String>(0));
                self.rows.insert(key, row.clone());
                Ok(row)
            }
            Ok(None) => Err(NotSeeded::because(format!(
                "the sentinel row of {tenant} in {table} changed since it was inserted"
            ))),
            Err(e) => Err(NotSeeded::because(format!(
                "its sentinel row could not be given values: {}",
                crate::error::describe_db_error(&e)
            ))),
        })
    }

    /// The values of a new row of `table` for `tenant`, for the runtime to insert (referenced
    /// rows are the tenant's sentinels, created by the oracle when missing).
    ///
    /// # Errors
    /// A database error when the catalog cannot be read.
    pub async fn new_row(
        &mut self,
        oracle: &Client,
        subject: &Subject,
        table: &str,
        tenant: &str,
    ) -> Result<Seeded<Map<String, Value>>> {
        self.values(oracle, subject, table, Some(tenant), Map::new(), 0)
            .await
    }

    /// The key expression of `table` as SQL over alias `t` (its primary key's values joined by
    /// commas, or the row's text without one), and
    /// whether it is a primary key.
    ///
    /// # Errors
    /// A database error when the catalog cannot be read.
    pub async fn key_sql(&mut self, client: &Client, table: &str) -> Result<(String, bool)> {
        let shape = self.shape(client, table).await?;
        Ok((key_expression(&shape), !shape.primary_key.is_empty()))
    }

    async fn shape(&mut self, client: &Client, table: &str) -> Result<Shape> {
        if let Some(s) = self.shapes.get(table) {
            return Ok(s.clone());
        }
        let shape = read_shape(client, table).await?;
        self.shapes.insert(table.to_string(), shape.clone());
        Ok(shape)
    }

    /// The first tenant id for `column` from the `next`-th on that no tenant table uses yet
    /// (an existing database has tenants of its own); `next` moves past it.
    ///
    /// # Errors
    /// A database error when a table cannot be read; a config error when a thousand candidates
    /// are all taken.
    async fn unused_tenant_value(
        &self,
        oracle: &Client,
        column: &Column,
        next: &mut usize,
    ) -> Result<Value> {
        let mut checks: Vec<String> = self
            .tenant_tables
            .iter()
            .map(|(t, c)| format!("SELECT 1 FROM {t} WHERE {}::text = $1", quote_ident(c)))
            .collect();
        if let Some((table, key)) = &self.tenant_key {
            checks.push(format!(
                "SELECT 1 FROM {table} WHERE {}::text = $1",
                quote_ident(key)
            ));
        }
        let sql = format!(
            "SELECT {}",
            checks
                .iter()
                .map(|c| format!("EXISTS ({c})"))
                .collect::<Vec<_>>()
                .join(" OR ")
        );
        for _ in 0..1000 {
            let candidate = self.tenant_value(column, *next);
            *next += 1;
            if checks.is_empty() {
                return Ok(candidate);
            }
            let used: bool = oracle
                .query_one(&sql, &[&text_of(&candidate)])
                .await
                .map_err(|e| Error::database("looking for the tenant ids in use", e))?
                .get(0);
            if !used {
                return Ok(candidate);
            }
        }
        Err(Error::config(format!(
            "every tenant id rlsgate tried for column {} is in use already",
            column.name
        )))
    }

    /// A tenant id for column `column`, the `i`-th tenant.
    fn tenant_value(&self, column: &Column, i: usize) -> Value {
        let n = i as u64;
        let hash = u64::from_str_radix(&self.tag, 16).unwrap_or(0);
        match column.type_name.as_str() {
            "uuid" => Value::String(
                Uuid::new_v5(&self.namespace, format!("tenant:{i}").as_bytes()).to_string(),
            ),
            "int2" => Value::from(20_000 + (hash % 10_000) + n),
            "int4" | "int8" | "numeric" => Value::from(1_900_000_000 + (hash % 100_000_000) + n),
            _ => Value::String(fit(
                &format!(
                    "rlsgate-{}-{}",
                    self.tag,
                    crate::workload::tenant_label(i).to_lowercase()
                ),
                column.max_len,
            )),
        }
    }
}

/// One insert attempt in a transaction of its own over `client`, with the tenant context set.
async fn try_insert(
    client: &Client,
    subject: &Subject,
    table: &str,
    shape: &Shape,
    tenant: Option<&str>,
    values: &Map<String, Value>,
    returning: bool,
) -> Result<std::result::Result<(Map<String, Value>, String), tokio_postgres::Error>> {
    let columns: Vec<String> = shape
        .columns
        .iter()
        .filter(|c| values.contains_key(&c.name))
        .map(|c| quote_ident(&c.name))
        .collect();
    // RETURNING needs the row to pass the SELECT policy too: a probe of a write alone goes
    // without it.
    let sql = if returning {
        format!(
            "{} RETURNING row_to_json(t)::text, {}",
            insert_sql(table, &columns),
            key_expression(shape)
        )
    } else {
        insert_sql(table, &columns)
    };
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| Error::database("opening a seeding transaction", e))?;
    if let Some(t) = tenant {
        let set = crate::probe::set_context_on(client, subject, t).await;
        if let Err(e) = set {
            let _ = client.batch_execute("ROLLBACK").await;
            return Ok(Err(e));
        }
    }
    let json = Value::Object(values.clone()).to_string();
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = if columns.is_empty() {
        Vec::new()
    } else {
        vec![&json]
    };
    let inserted = if returning {
        client
            .query_one(&sql, &params)
            .await
            .map(|row| (parse_object(&row.get::<_, String>(0)), row.get(1)))
    } else {
        client
            .execute(&sql, &params)
            .await
            .map(|_| (Map::new(), String::new()))
    };
    match inserted {
        Ok(row) => {
            client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| Error::database("committing a seeded row", e))?;
            Ok(Ok(row))
        }
        Err(e) => {
            client
                .batch_execute("ROLLBACK")
                .await
                .map_err(|e| Error::database("rolling a seeding attempt back", e))?;
            Ok(Err(e))
        }
    }
}

/// `INSERT ... SELECT ... FROM json_populate_record(...)`, without RETURNING.
fn insert_sql(table: &str, columns: &[String]) -> String {
    if columns.is_empty() {
        format!("INSERT INTO {table} AS t DEFAULT VALUES")
    } else {
        let list = columns.join(", ");
        format!(
            "INSERT INTO {table} AS t ({list}) SELECT {list} FROM json_populate_record(NULL::{table}, $1::text::json)"
        )
    }
}

/// The SQL a runtime uses to insert `values` into `table` (for reproductions and the DML
/// property): the same statement seeding uses.
pub fn insert_statement(table: &str, values: &Map<String, Value>) -> String {
    let columns: Vec<String> = values.keys().map(|c| quote_ident(c)).collect();
    insert_sql(table, &columns)
}

fn parse_object(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// A JSON value as the text PostgreSQL would print.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Truncate `s` to `max` characters, keeping its end (where the counter is).
fn fit(s: &str, max: Option<usize>) -> String {
    match max {
        Some(m) if s.chars().count() > m => {
            let skip = s.chars().count() - m;
            s.chars().skip(skip).collect()
        }
        _ => s.to_string(),
    }
}

/// The first value a CHECK holds string column `column` to, if one lists them.
fn listed_value(shape: &Shape, column: &Column) -> Option<String> {
    if column.category != 'S' {
        return None;
    }
    shape.listed.get(&column.name)?.first().cloned()
}

/// A value of `column`'s type, unique by `n`.
fn generate(column: &Column, n: u64, tag: &str, namespace: Uuid) -> Option<Value> {
    let text = |s: String| Some(Value::String(fit(&s, column.max_len)));
    match column.type_name.as_str() {
        "int2" => Some(Value::from(n % 30_000 + 1)),
        // numeric(p, s) holds p - s digits before the point.
        "numeric" => Some(Value::from(match column.integer_digits {
            Some(d) => n % 10u64.saturating_pow(d.min(18)),
            None => n,
        })),
        "int4" | "int8" | "float4" | "float8" | "oid" => Some(Value::from(n)),
        "money" => text(format!("{n}.00")),
        "bool" => Some(Value::Bool(true)),
        "uuid" => Some(Value::String(
            Uuid::new_v5(&namespace, format!("value:{n}").as_bytes()).to_string(),
        )),
        // The first of a month (month-truncation checks hold), 2026 first (partitions by year
        // usually cover the current one), a different month for each n (unique keys hold).
        "date" => Some(Value::String(format!("{}-01", month(n)))),
        "timestamp" | "timestamptz" => Some(Value::String(format!("{}-01T00:00:00Z", month(n)))),
        "time" | "timetz" => Some(Value::String("00:00:00".into())),
        "interval" => Some(Value::String("1 hour".into())),
        "json" | "jsonb" => Some(Value::Object(Map::new())),
        "inet" | "cidr" => Some(Value::String(format!(
            "10.{}.{}.1",
            (n / 250) % 250,
            n % 250
        ))),
        "macaddr" => Some(Value::String("08:00:2b:01:02:03".into())),
        "bytea" => Some(Value::String(format!("\\x{:02x}", n % 256))),
        "text" | "varchar" | "bpchar" | "citext" | "name" => text(format!("rlsgate-{tag}-{n}")),
        _ if column.category == 'E' => column.labels.first().cloned().map(Value::String),
        _ if column.category == 'A' => Some(Value::String("{}".into())),
        _ if column.category == 'S' => text(format!("rlsgate-{tag}-{n}")),
        _ if column.category == 'N' => Some(Value::from(n)),
        _ => None,
    }
}

/// `YYYY-MM` for the `n`-th value: January 2026 for the first, then on month by month.
fn month(n: u64) -> String {
    let m = n.saturating_sub(1);
    format!("{}-{:02}", 2026 + (m / 12) % 70, m % 12 + 1)
}

/// Candidate values from a constraint's literals: each literal, and for numbers the next one
/// up and down (a bound like `> 0` needs 1).
fn candidates(literals: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for l in literals {
        out.push(l.clone());
        if let Ok(n) = l.parse::<i64>() {
            out.push((n + 1).to_string());
            out.push((n - 1).to_string());
        }
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_start_with_the_literals_then_their_neighbours() {
        assert_eq!(candidates(&["0".into()]), ["0", "1", "-1"]);
    }

    #[test]
    fn generated_text_fits_its_length_and_keeps_the_counter() {
        assert_eq!(fit("rlsgate-abcdef-12", Some(4)), "f-12");
        assert_eq!(fit("abc", Some(10)), "abc");
    }
}
