//! Bring your own schema: what rlsgate knows of a project described by its `rlsgate.toml`
//! ([`config`]): its database ([`Source`]: its migrations applied as its admin role into a
//! fresh database, or an existing one by URL), the checks of the file against the catalog, the
//! privileges it declares, rlsgate's own tenants and sentinel rows (`seed`), the DML property
//! (`dml`), the DLQ checks, and the draft `rlsgate init` writes of the file ([`draft`]). The
//! campaign driver ([`crate::campaign::check_project`]) runs them, with the same stages,
//! evidence and exit codes as `rlsgate run`.

pub(crate) mod calls;
pub mod config;
pub(crate) mod dlq;
pub(crate) mod dml;
pub mod draft;
pub(crate) mod privileges;
pub(crate) mod references;
pub(crate) mod seed;
mod shape;
pub(crate) mod target;

pub use config::{Preset, ProjectConfig};
pub use dlq::DLQ_STATEMENT;
pub use target::Source;

use crate::invariants::InvariantId;
use crate::subject::{ExpectedPrivileges, Subject};

/// The invariants a project is checked against (the history invariants need the built-in
/// worker; `dlq-completeness` needs a `[dlq]` table).
pub const INVARIANTS: [InvariantId; 9] = [
    InvariantId::TenantIsolation,
    InvariantId::WriteCheck,
    InvariantId::NoContextClosed,
    InvariantId::ContextHygiene,
    InvariantId::RuntimeIdentity,
    InvariantId::LeastPrivilege,
    InvariantId::RuntimeLacksDdl,
    InvariantId::RlsCoverage,
    InvariantId::SideChannels,
];

/// The subject of the checks, from the file (the expected privileges come later, from the
/// catalog).
pub fn subject_of(project: &ProjectConfig) -> Subject {
    Subject {
        runtime_role: project.roles.runtime.clone(),
        admin_role: project.roles.admin.clone(),
        tenant_setting: project.tenant.setting.clone(),
        tenant_columns: project.tenant.columns.clone(),
        set_context: project.tenant.set_context.clone(),
        schemas: project.schema.schemas.clone(),
        exclude: project.schema.exclude.clone(),
        include: project.schema.include.clone(),
        expected: ExpectedPrivileges::default(),
        require_forced_rls: project.tenant.require_forced_rls,
    }
}

/// The findings the project accepts (`[[accept]]`, validated when the file was read).
pub fn acceptances(project: &ProjectConfig) -> Vec<crate::invariants::Acceptance> {
    project
        .accept
        .iter()
        .filter_map(|a| {
            Some(crate::invariants::Acceptance {
                invariant: a.invariant.parse().ok()?,
                relation: a.relation.clone(),
                probe: a.probe.clone(),
                reason: a.reason.clone(),
            })
        })
        .collect()
}
