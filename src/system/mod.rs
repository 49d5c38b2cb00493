//! The persistence system under test: the LLM-audit worker, its tasks, outcomes and broken
//! variants (docs/system.md sections 5 and 8).

pub mod outcome;
pub mod task;
pub mod variant;
pub mod worker;

pub use outcome::{ErrorClass, Failure, Outcome};
pub use task::{TaskFaults, TaskMessage, TaskName, TenantProblem};
pub use variant::Variant;
pub use worker::{TENANT_SETTING, Worker, WorkerConfig, live_connections};

use uuid::Uuid;

use crate::database::Database;
use crate::error::{Error, Result};
use crate::roles::Role;

/// Create tenant `id` as the admin role (the runtime holds no privilege on `tenants`).
///
/// # Errors
/// A database error when the insert fails.
pub async fn create_tenant(db: &Database, id: Uuid, name: &str) -> Result<()> {
    let admin = db.connect(Role::MigrationOwner).await?;
    admin
        .execute(
            "INSERT INTO tenants (id, name) VALUES ($1, $2)",
            &[&id, &name],
        )
        .await
        .map_err(|e| Error::database(format!("creating tenant {name}"), e))?;
    Ok(())
}
