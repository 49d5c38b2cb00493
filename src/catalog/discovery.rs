//! Discovery: everything of the project's schemas the runtime role can reach (tables,
//! partitions, views, materialized views, functions, sequences), which of them hold tenant
//! data, and whether seeding could give each tenant table its sentinel rows.

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::catalog::Relation;
use crate::error::{Error, Result};
use crate::migrations::origin::Origins;
use crate::subject::Subject;

/// A relation of the project's schemas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveredRelation {
    /// Schema-qualified name.
    pub name: String,
    /// `table`, `partitioned table`, `partition`, `view`, `materialized view`, `foreign table`.
    pub kind: String,
    /// Its tenant column, when it holds tenant data.
    pub tenant_column: Option<String>,
    /// What the runtime may do with it (SELECT, INSERT, UPDATE, DELETE).
    pub runtime: Vec<String>,
    /// For a tenant table: `seeded`, or why it could not be.
    pub seeding: Option<String>,
}

/// A function or procedure of the project's schemas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveredFunction {
    /// `regprocedure` text.
    pub signature: String,
    /// SECURITY DEFINER.
    pub security_definer: bool,
    /// Whether the runtime can execute it.
    pub runtime_can_execute: bool,
}

/// A sequence of the project's schemas and what the runtime may do with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveredSequence {
    /// Schema-qualified name.
    pub name: String,
    /// USAGE, SELECT, UPDATE held by the runtime.
    pub runtime: Vec<String>,
}

/// What a project check found in the catalog and seeded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discovery {
    /// Relations, by name.
    pub relations: Vec<DiscoveredRelation>,
    /// Functions and procedures, by signature.
    pub functions: Vec<DiscoveredFunction>,
    /// Sequences, by name.
    pub sequences: Vec<DiscoveredSequence>,
    /// The minimal DML sequence that broke the visibility model, as SQL, when one did.
    pub reproduction: Option<String>,
    /// The ids of the tenants rlsgate created (none in place).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
    /// Where the project's migrations created each object (none for an existing database):
    /// what `results.sarif` points a finding at.
    #[serde(default, skip_serializing_if = "Origins::is_empty")]
    pub origins: Origins,
}

impl Discovery {
    /// Record, for each tenant table, whether it was seeded.
    pub fn mark_seeded(&mut self, failures: &std::collections::BTreeMap<String, String>) {
        for r in &mut self.relations {
            if r.tenant_column.is_none()
                || !matches!(r.kind.as_str(), "table" | "partitioned table")
            {
                continue;
            }
            r.seeding = Some(match failures.get(&r.name) {
                Some(why) => format!("not seeded: {why}"),
                None => "seeded".into(),
            });
        }
    }
}

/// Read what the runtime can reach in the subject's schemas.
///
/// # Errors
/// A database error when the catalog cannot be read.
pub async fn read(oracle: &Client, subject: &Subject, relations: &[Relation]) -> Result<Discovery> {
    let relations = relations
        .iter()
        .map(|r| DiscoveredRelation {
            name: r.name.clone(),
            kind: match (r.kind, r.is_partition) {
                ('r', true) | ('p', true) => "partition",
                ('r', false) => "table",
                ('p', false) => "partitioned table",
                ('v', _) => "view",
                ('m', _) => "materialized view",
                ('f', _) => "foreign table",
                _ => "relation",
            }
            .into(),
            tenant_column: r.tenant_column.clone(),
            runtime: [
                ("SELECT", r.runtime_can_select),
                ("INSERT", r.runtime_can_insert),
                ("UPDATE", r.runtime_can_update),
                ("DELETE", r.runtime_can_delete),
            ]
            .iter()
            .filter(|(_, h)| *h)
            .map(|(p, _)| p.to_string())
            .collect(),
            seeding: None,
        })
        .collect();
    let functions = oracle
        .query(
            &format!(
                "SELECT {}, p.prosecdef,
                        r.oid IS NOT NULL AND has_function_privilege(r.oid, p.oid, 'EXECUTE')
                 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 LEFT JOIN pg_roles r ON r.rolname = $2
                 WHERE n.nspname = ANY($1)
                   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
                 ORDER BY 1",
                crate::catalog::function_name_sql("p")
            ),
            &[&subject.schemas, &subject.runtime_role],
        )
        .await
        .map_err(|e| Error::database("discovering functions", e))?
        .iter()
        .map(|r| DiscoveredFunction {
            signature: r.get(0),
            security_definer: r.get(1),
            runtime_can_execute: r.get(2),
        })
        .collect();
    let sequences = oracle
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname),
                    ARRAY(SELECT p FROM unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) AS p
                          WHERE r.oid IS NOT NULL AND has_sequence_privilege(r.oid, c.oid, p))
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_roles r ON r.rolname = $2
             WHERE n.nspname = ANY($1) AND c.relkind = 'S'
             ORDER BY 1",
            &[&subject.schemas, &subject.runtime_role],
        )
        .await
        .map_err(|e| Error::database("discovering sequences", e))?
        .iter()
        .map(|r| DiscoveredSequence {
            name: r.get(0),
            runtime: r.get(1),
        })
        .collect();
    Ok(Discovery {
        relations,
        functions,
        sequences,
        reproduction: None,
        tenants: Vec::new(),
        origins: Origins::default(),
    })
}
