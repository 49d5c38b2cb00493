//! The static checks (least-privilege, rls-coverage, runtime-identity) and the DDL probes
//! (runtime-lacks-ddl), both polarities: everything holds on the reference system, and each
//! named broken variant or hand-made breakage is reported under the expected invariant.
use rlsgate::catalog::policies::{PolicyCatalogue, PolicyCommand, PolicyMode, RelationKind};
use rlsgate::catalog::privileges::ObjectKind;
use rlsgate::catalog::{self, privileges};
use rlsgate::invariants::{
    InvariantId, Observation, Status, Undecided, least_privilege, rls_coverage, runtime_identity,
    runtime_lacks_ddl,
};
use rlsgate::subject::Subject;
use rlsgate::system::Variant;
use rlsgate::{Database, Role};
use rstest::rstest;

use crate::support::shared_server;

const TENANT_TABLES: [&str; 5] = [
    "public.budget_optimization_jobs",
    "public.investigations",
    "public.llm_api_calls",
    "public.llm_monthly_costs",
    "public.worker_failed_jobs",
];

async fn fresh(variants: &[Variant]) -> Database {
    let db = shared_server().await.fresh_database().await.unwrap();
    for v in variants {
        v.apply_schema(&db).await.unwrap();
    }
    db
}

async fn as_superuser(db: &Database, sql: &str) {
    db.connect(Role::Superuser)
        .await
        .unwrap()
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Every observation of the four modules for `subject`, the runtime logging in with `runtime`.
async fn observe(
    db: &Database,
    subject: &Subject,
    runtime: &tokio_postgres::Config,
) -> Vec<Observation> {
    let oracle = db.connect(Role::Superuser).await.unwrap();
    let relations = catalog::relations(&oracle, subject).await.unwrap();
    let worker = rlsgate::Server::connect_with(runtime).await.unwrap();
    let mut out = least_privilege::check(&oracle, subject).await.unwrap();
    out.extend(rls_coverage::check(&oracle, subject).await.unwrap());
    out.extend(
        runtime_lacks_ddl::check(runtime, subject, &relations)
            .await
            .unwrap(),
    );
    out.extend(
        runtime_identity::check_role(&oracle, subject)
            .await
            .unwrap(),
    );
    out.extend(
        runtime_identity::check_migrations(&oracle, subject)
            .await
            .unwrap(),
    );
    out.extend(
        runtime_identity::check_connections(&[&worker], subject)
            .await
            .unwrap(),
    );
    out
}

async fn observe_reference(db: &Database) -> Vec<Observation> {
    observe(
        db,
        &Subject::reference(),
        &db.config(Role::Runtime).await.unwrap(),
    )
    .await
}

/// The observations of `id` that are not `holds`.
fn problems(observations: &[Observation], id: InvariantId) -> Vec<&Observation> {
    observations
        .iter()
        .filter(|o| o.invariant == id && o.status != Status::Holds)
        .collect()
}

/// Assert that `id` has a violation whose detail contains `needle`, and return it.
fn assert_violated<'a>(
    observations: &'a [Observation],
    id: InvariantId,
    needle: &str,
) -> &'a Observation {
    observations
        .iter()
        .find(|o| o.invariant == id && o.status == Status::Violated && o.detail.contains(needle))
        .unwrap_or_else(|| {
            panic!(
                "no {id} violation containing {needle:?}; {id} found:\n{}",
                render(problems(observations, id))
            )
        })
}

fn render(observations: Vec<&Observation>) -> String {
    observations
        .iter()
        .map(|o| format!("  {o}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Objects a DDL probe would have created, or that a probe would have changed, if anything was
/// left behind.
async fn leftovers(db: &Database) -> i64 {
    let su = db.connect(Role::Superuser).await.unwrap();
    su.query_one(
        "SELECT (SELECT count(*) FROM pg_class WHERE relname LIKE 'rlsgate_probe%')
              + (SELECT count(*) FROM pg_proc WHERE proname LIKE 'rlsgate_probe%')
              + (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rlsgate_probe%')
              + (SELECT count(*) FROM pg_roles WHERE rolname LIKE 'rlsgate_probe%')
              + (SELECT count(*) FROM pg_attribute WHERE attname LIKE 'rlsgate_probe%')",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn on_the_reference_system_every_static_check_and_ddl_probe_holds() {
    let db = fresh(&[]).await;
    let observations = observe_reference(&db).await;
    let not_holding: Vec<&Observation> = observations
        .iter()
        .filter(|o| o.status != Status::Holds)
        .collect();
    assert!(
        not_holding.is_empty(),
        "the reference must hold everywhere:\n{}",
        render(not_holding)
    );
    for id in [
        InvariantId::LeastPrivilege,
        InvariantId::RlsCoverage,
        InvariantId::RuntimeLacksDdl,
        InvariantId::RuntimeIdentity,
    ] {
        assert!(
            observations.iter().filter(|o| o.invariant == id).count() >= 5,
            "{id} made too few checks"
        );
    }
    // Every DDL probe was refused for lack of privilege, not for some other reason.
    let ddl: Vec<_> = observations
        .iter()
        .filter(|o| o.invariant == InvariantId::RuntimeLacksDdl)
        .collect();
    assert_eq!(
        ddl.len(),
        6 + 1 + 5 * 7,
        "probes: general, SET ROLE, per table"
    );
    for o in &ddl {
        if o.probe == "ESCALATION:GRANT" {
            assert!(
                o.detail.contains("changed nothing") || o.sqlstate.is_some(),
                "{o}"
            );
        } else {
            assert_eq!(o.sqlstate.as_deref(), Some("42501"), "{o}");
        }
    }
    assert_eq!(leftovers(&db).await, 0, "a probe left something behind");
}

#[tokio::test]
async fn the_reference_matrix_is_the_declared_one_and_the_catalogue_lists_every_tenant_table() {
    let db = fresh(&[]).await;
    let oracle = db.connect(Role::Superuser).await.unwrap();
    let subject = Subject::reference();
    let matrix = privileges::matrix(&oracle, &subject).await.unwrap();
    assert_eq!(matrix.differences().count(), 0, "{matrix:#?}");
    let rows: Vec<(ObjectKind, &str, &str)> = matrix
        .entries
        .iter()
        .map(|e| (e.object_kind, e.object.as_str(), e.privilege.as_str()))
        .collect();
    let database = db.name();
    let mut expected = vec![
        (
            ObjectKind::Relation,
            "public.budget_optimization_jobs",
            "INSERT",
        ),
        (
            ObjectKind::Relation,
            "public.budget_optimization_jobs",
            "SELECT",
        ),
        (ObjectKind::Relation, "public.investigations", "INSERT"),
        (ObjectKind::Relation, "public.investigations", "SELECT"),
        (ObjectKind::Relation, "public.llm_api_calls", "INSERT"),
        (ObjectKind::Relation, "public.llm_api_calls", "SELECT"),
        (ObjectKind::Relation, "public.llm_monthly_costs", "INSERT"),
        (ObjectKind::Relation, "public.llm_monthly_costs", "SELECT"),
        (ObjectKind::Relation, "public.llm_monthly_costs", "UPDATE"),
        (ObjectKind::Relation, "public.worker_failed_jobs", "INSERT"),
        (ObjectKind::Relation, "public.worker_failed_jobs", "SELECT"),
        (ObjectKind::Schema, "public", "USAGE"),
        (ObjectKind::Database, database, "CONNECT"),
    ];
    expected.sort();
    assert_eq!(rows, expected);

    let catalogue = PolicyCatalogue::from(
        rlsgate::catalog::policies::catalogue(&oracle, &subject)
            .await
            .unwrap(),
    );
    let names: Vec<_> = catalogue
        .entries
        .iter()
        .map(|e| e.relation.as_str())
        .collect();
    assert_eq!(names, TENANT_TABLES, "tenants has no tenant column");
    for e in &catalogue.entries {
        assert_eq!(e.kind, RelationKind::Table);
        assert!(e.rls_enabled && e.rls_forced, "{e:?}");
        assert_eq!(e.owner, "migration_owner");
        assert!(!e.runtime_has_owner_privileges);
        assert_eq!(e.policies.len(), 1, "{e:?}");
        let p = &e.policies[0];
        assert_eq!(
            (p.name.as_str(), p.mode, p.command, p.roles.as_slice()),
            (
                "tenant_isolation",
                PolicyMode::Permissive,
                PolicyCommand::All,
                &["PUBLIC".to_string()][..]
            )
        );
        assert!(p.applies_to_runtime);
        for expr in [&p.using, &p.with_check] {
            assert!(
                expr.as_deref()
                    .unwrap()
                    .contains("current_setting('app.current_tenant_id'"),
                "{p:?}"
            );
        }
    }
    let json = serde_json::to_string(&catalogue).unwrap();
    assert_eq!(
        serde_json::from_str::<PolicyCatalogue>(&json).unwrap(),
        catalogue
    );
    let json = serde_json::to_string(&matrix).unwrap();
    assert_eq!(
        serde_json::from_str::<privileges::PrivilegeMatrix>(&json).unwrap(),
        matrix
    );
}

#[tokio::test]
async fn rls_not_forced_with_the_runtime_owning_the_tables_is_caught_three_ways() {
    let db = fresh(&[Variant::RlsNotForcedRuntimeOwner]).await;
    let o = observe_reference(&db).await;
    for table in &TENANT_TABLES[..4] {
        let v = assert_violated(&o, InvariantId::RlsCoverage, "not forced");
        assert!(v.detail.contains("the runtime app_user itself"), "{v}");
        assert!(
            o.iter().any(|x| x.invariant == InvariantId::RlsCoverage
                && x.status == Status::Violated
                && x.relation.as_deref() == Some(*table)
                && x.probe == "catalog:relforcerowsecurity"),
            "{table} not reported as unforced"
        );
        assert_violated(
            &o,
            InvariantId::LeastPrivilege,
            &format!("app_user owns table {table}"),
        );
        let disable = o
            .iter()
            .find(|x| {
                x.probe == "DDL:DISABLE ROW LEVEL SECURITY" && x.relation.as_deref() == Some(*table)
            })
            .unwrap();
        assert_eq!(disable.status, Status::Violated, "{disable}");
        assert_eq!(
            disable.statement.as_deref(),
            Some(format!("ALTER TABLE {table} DISABLE ROW LEVEL SECURITY").as_str())
        );
        assert_violated(
            &o,
            InvariantId::RuntimeIdentity,
            &format!("table {table} is owned by app_user, not by the admin role"),
        );
    }
    assert_violated(&o, InvariantId::RuntimeLacksDdl, "row_security = off");
    assert_violated(
        &o,
        InvariantId::LeastPrivilege,
        "app_user holds TRUNCATE on public.llm_api_calls",
    );
    // The DLQ was not touched by the variant: still owned by migration_owner and forced.
    assert!(
        !problems(&o, InvariantId::RlsCoverage)
            .iter()
            .any(|x| x.relation.as_deref() == Some("public.worker_failed_jobs"))
    );
    assert_eq!(
        leftovers(&db).await,
        0,
        "a succeeding probe left something behind"
    );
    let su = db.connect(Role::Superuser).await.unwrap();
    let still: bool = su
        .query_one(
            "SELECT relrowsecurity FROM pg_class WHERE oid = 'public.llm_api_calls'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(still, "the DISABLE probe was rolled back");
}

#[tokio::test]
async fn with_check_true_is_an_rls_coverage_violation_and_nothing_else() {
    let db = fresh(&[Variant::WithCheckTrue]).await;
    let o = observe_reference(&db).await;
    let found = problems(&o, InvariantId::RlsCoverage);
    assert_eq!(
        found.len(),
        4,
        "one per altered table:\n{}",
        render(found.clone())
    );
    for x in &found {
        assert_eq!(x.probe, "catalog:policy-with-check", "{x}");
        assert!(
            x.detail.contains("WITH CHECK is trivially true: `true`"),
            "{x}"
        );
    }
    for id in [
        InvariantId::LeastPrivilege,
        InvariantId::RuntimeLacksDdl,
        InvariantId::RuntimeIdentity,
    ] {
        assert!(problems(&o, id).is_empty(), "{}", render(problems(&o, id)));
    }
}

#[tokio::test]
async fn a_missing_grant_is_a_least_privilege_violation_and_nothing_else() {
    let db = fresh(&[Variant::MissingGrant]).await;
    let o = observe_reference(&db).await;
    let v = assert_violated(
        &o,
        InvariantId::LeastPrivilege,
        "declared SELECT on public.llm_api_calls is missing",
    );
    assert_eq!(v.relation.as_deref(), Some("public.llm_api_calls"));
    assert_violated(
        &o,
        InvariantId::LeastPrivilege,
        "declared INSERT on public.llm_api_calls is missing",
    );
    assert_eq!(problems(&o, InvariantId::LeastPrivilege).len(), 2);
    for id in [
        InvariantId::RlsCoverage,
        InvariantId::RuntimeLacksDdl,
        InvariantId::RuntimeIdentity,
    ] {
        assert!(problems(&o, id).is_empty(), "{}", render(problems(&o, id)));
    }
}

#[tokio::test]
async fn the_original_dlq_policy_is_unforced_and_widened() {
    let db = fresh(&[Variant::DlqPolicyOriginal]).await;
    let o = observe_reference(&db).await;
    let found = problems(&o, InvariantId::RlsCoverage);
    assert!(
        found
            .iter()
            .all(|x| x.relation.as_deref() == Some("public.worker_failed_jobs")),
        "{}",
        render(found.clone())
    );
    assert_violated(
        &o,
        InvariantId::RlsCoverage,
        "row-level security is not forced on public.worker_failed_jobs",
    );
    assert_violated(
        &o,
        InvariantId::RlsCoverage,
        "widened by an OR branch that ignores the tenant context: `(tenant_id IS NULL)`",
    );
}

/// A hand-made breakage applied as the superuser, and what each invariant must then say.
#[rstest]
#[case::truncate_granted(
    "GRANT TRUNCATE ON llm_api_calls TO app_user",
    &[
        (InvariantId::LeastPrivilege, "app_user holds TRUNCATE on public.llm_api_calls, not declared"),
        (InvariantId::RuntimeLacksDdl, "app_user can truncate public.llm_api_calls"),
    ]
)]
#[case::default_privileges(
    "ALTER DEFAULT PRIVILEGES FOR ROLE migration_owner IN SCHEMA public GRANT SELECT ON TABLES TO app_user",
    &[(InvariantId::LeastPrivilege, "default privileges of migration_owner in schema public hand SELECT on future tables to app_user")]
)]
#[case::view_without_security_invoker(
    "CREATE VIEW public.v AS SELECT * FROM llm_api_calls;
     ALTER VIEW public.v OWNER TO migration_owner;
     GRANT SELECT ON public.v TO app_user",
    &[
        (InvariantId::RlsCoverage, "view public.v exposes the tenant column to app_user without security_invoker"),
        (InvariantId::LeastPrivilege, "app_user holds SELECT on public.v, not declared"),
    ]
)]
#[case::materialized_view(
    "CREATE MATERIALIZED VIEW public.mv AS SELECT * FROM llm_api_calls;
     ALTER MATERIALIZED VIEW public.mv OWNER TO migration_owner;
     GRANT SELECT ON public.mv TO app_user",
    &[(InvariantId::RlsCoverage, "materialized view public.mv holds tenant rows and cannot carry row-level security")]
)]
#[case::create_on_schema(
    "GRANT CREATE ON SCHEMA public TO app_user",
    &[
        (InvariantId::LeastPrivilege, "app_user holds CREATE on schema public, not declared"),
        (InvariantId::RuntimeLacksDdl, "app_user can create a table in schema public"),
        (InvariantId::RuntimeLacksDdl, "app_user can create a function in schema public"),
    ]
)]
#[case::column_grant(
    "GRANT UPDATE (endpoint) ON llm_api_calls TO app_rw",
    &[(InvariantId::LeastPrivilege, "app_user holds column-level UPDATE on public.llm_api_calls (endpoint) through app_rw, not declared")]
)]
#[case::grant_option(
    "GRANT SELECT ON llm_api_calls TO app_user WITH GRANT OPTION",
    &[
        (InvariantId::LeastPrivilege, "app_user holds declared SELECT on public.llm_api_calls WITH GRANT OPTION"),
        (InvariantId::RuntimeLacksDdl, "app_user can grant SELECT on public.llm_api_calls to PUBLIC"),
    ]
)]
#[case::select_only_policy(
    "DROP POLICY tenant_isolation ON investigations;
     CREATE POLICY tenant_read ON investigations FOR SELECT
       USING (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid)",
    &[(InvariantId::RlsCoverage, "app_user holds INSERT on public.investigations but no permissive policy for INSERT applies to it")]
)]
#[case::permissive_policy_using_true(
    "CREATE POLICY admins ON llm_monthly_costs USING (true)",
    &[(InvariantId::RlsCoverage, "permissive policy admins (ALL) on public.llm_monthly_costs: USING is trivially true")]
)]
#[case::function_executable_by_public(
    "CREATE FUNCTION public.tenant_of(uuid) RETURNS uuid LANGUAGE sql AS 'SELECT $1';
     ALTER FUNCTION public.tenant_of(uuid) OWNER TO migration_owner",
    &[(InvariantId::LeastPrivilege, "app_user holds EXECUTE on function public.tenant_of(uuid), not declared")]
)]
#[case::sequence_usage(
    "CREATE SEQUENCE public.s;
     ALTER SEQUENCE public.s OWNER TO migration_owner;
     GRANT USAGE ON SEQUENCE public.s TO app_rw",
    &[(InvariantId::LeastPrivilege, "app_user holds USAGE on sequence public.s, not declared")]
)]
#[case::database_temporary(
    "GRANT TEMPORARY ON DATABASE \"{db}\" TO PUBLIC",
    &[
        (InvariantId::LeastPrivilege, "app_user holds TEMPORARY on database"),
        (InvariantId::RuntimeLacksDdl, "app_user can create a temporary table"),
    ]
)]
#[tokio::test]
async fn a_hand_made_breakage_is_reported(
    #[case] sql: &str,
    #[case] expected: &[(InvariantId, &str)],
) {
    let db = fresh(&[]).await;
    as_superuser(&db, &sql.replace("{db}", db.name())).await;
    let o = observe_reference(&db).await;
    for (id, needle) in expected {
        assert_violated(&o, *id, needle);
    }
    assert_eq!(leftovers(&db).await, 0, "a probe left something behind");
}

#[tokio::test]
async fn a_view_with_security_invoker_is_covered() {
    let db = fresh(&[]).await;
    as_superuser(
        &db,
        "CREATE VIEW public.v WITH (security_invoker = true) AS SELECT * FROM llm_api_calls;
         ALTER VIEW public.v OWNER TO migration_owner;
         CREATE MATERIALIZED VIEW public.mv AS SELECT * FROM llm_api_calls;
         ALTER MATERIALIZED VIEW public.mv OWNER TO migration_owner",
    )
    .await;
    let o = observe_reference(&db).await;
    let found = problems(&o, InvariantId::RlsCoverage);
    assert!(found.is_empty(), "{}", render(found));
    assert!(
        o.iter()
            .any(|x| x.relation.as_deref() == Some("public.mv") && x.status == Status::Holds),
        "the unreadable materialized view is listed"
    );
}

#[tokio::test]
async fn a_leaf_partition_readable_directly_must_be_covered_itself() {
    let db = fresh(&[]).await;
    as_superuser(
        &db,
        "SET ROLE migration_owner;
         CREATE TABLE public.events (tenant_id uuid NOT NULL, at date NOT NULL) PARTITION BY RANGE (at);
         CREATE TABLE public.events_2024 PARTITION OF public.events
             FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
         ALTER TABLE public.events ENABLE ROW LEVEL SECURITY;
         ALTER TABLE public.events FORCE ROW LEVEL SECURITY;
         CREATE POLICY tenant_isolation ON public.events
             USING (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid);
         GRANT SELECT ON public.events TO app_ro",
    )
    .await;
    let o = observe_reference(&db).await;
    let found = problems(&o, InvariantId::RlsCoverage);
    assert!(
        found.is_empty(),
        "the parent covers a leaf the runtime cannot touch:\n{}",
        render(found)
    );
    let leaf = o
        .iter()
        .find(|x| x.relation.as_deref() == Some("public.events_2024"))
        .unwrap();
    assert_eq!(leaf.probe, "catalog:partition", "{leaf}");

    as_superuser(&db, "GRANT SELECT ON public.events_2024 TO app_ro").await;
    let o = observe_reference(&db).await;
    let v = assert_violated(
        &o,
        InvariantId::RlsCoverage,
        "row-level security is not enabled on public.events_2024",
    );
    assert_eq!(v.relation.as_deref(), Some("public.events_2024"));
}

/// Role memberships are cluster-wide and the server is shared: this test gives its breakage to
/// a runtime role of its own (mirroring app_user's grants) instead of app_user, which also shows
/// the checks are generic over the subject.
#[tokio::test]
async fn a_runtime_in_pg_read_all_data_is_not_least_privilege() {
    let db = fresh(&[]).await;
    let role = format!(
        "rlsgate_rt_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let password = uuid::Uuid::new_v4().simple().to_string();
    as_superuser(
        &db,
        &format!(
            "CREATE ROLE {role} LOGIN INHERIT NOSUPERUSER NOBYPASSRLS PASSWORD '{password}';
             GRANT app_rw, app_ro TO {role};
             GRANT SELECT, INSERT ON worker_failed_jobs TO {role};
             GRANT CONNECT ON DATABASE {} TO {role}",
            db.name()
        ),
    )
    .await;
    let mut subject = Subject::reference();
    subject.runtime_role = role.clone();
    let mut config = db.config(Role::Runtime).await.unwrap();
    config.user(&role).password(&password);

    let before = observe(&db, &subject, &config).await;
    as_superuser(&db, &format!("GRANT pg_read_all_data TO {role}")).await;
    let after = observe(&db, &subject, &config).await;
    as_superuser(&db, &format!("DROP OWNED BY {role}; DROP ROLE {role}")).await;

    let clean: Vec<_> = before
        .iter()
        .filter(|o| o.status != Status::Holds)
        .collect();
    assert!(
        clean.is_empty(),
        "a second runtime like app_user holds:\n{}",
        render(clean)
    );
    assert_violated(
        &after,
        InvariantId::LeastPrivilege,
        &format!("{role} is a member of pg_read_all_data, not declared"),
    );
    assert_violated(
        &after,
        InvariantId::LeastPrivilege,
        &format!("{role} holds SELECT on public.tenants, not declared"),
    );
}

#[tokio::test]
async fn worker_connections_must_run_as_the_runtime() {
    let db = fresh(&[]).await;
    let subject = Subject::reference();
    let runtime = db.connect(Role::Runtime).await.unwrap();
    let owner = db.connect(Role::MigrationOwner).await.unwrap();

    let ok = runtime_identity::check_connections(&[&runtime], &subject)
        .await
        .unwrap();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].status, Status::Holds, "{}", ok[0]);

    let mixed = runtime_identity::check_connections(&[&runtime, &owner], &subject)
        .await
        .unwrap();
    assert_eq!(
        mixed.iter().map(|o| o.status).collect::<Vec<_>>(),
        [Status::Holds, Status::Violated]
    );
    assert_eq!(
        mixed[1].detail,
        "worker connection 1 runs as migration_owner, not app_user"
    );
    assert_eq!(mixed[1].invariant, InvariantId::RuntimeIdentity);

    let none = runtime_identity::check_connections(&[], &subject)
        .await
        .unwrap();
    assert_eq!(none[0].status, Status::Inconclusive);
    assert_eq!(none[0].undecided, Some(Undecided::NothingToCheck));
}

#[tokio::test]
async fn migrations_must_have_been_applied_by_the_admin_role() {
    let db = fresh(&[]).await;
    let subject = Subject::reference();
    let oracle = db.connect(Role::Superuser).await.unwrap();
    let ok = runtime_identity::check_migrations(&oracle, &subject)
        .await
        .unwrap();
    assert!(ok.iter().all(|o| o.status == Status::Holds), "{ok:?}");
    assert!(
        ok.iter()
            .any(|o| o.relation.as_deref() == Some("0001_tenants.sql"))
    );

    as_superuser(
        &db,
        "UPDATE rlsgate_migrations SET applied_by = 'app_user' WHERE version = 2",
    )
    .await;
    let o = runtime_identity::check_migrations(&oracle, &subject)
        .await
        .unwrap();
    let v = assert_violated(
        &o,
        InvariantId::RuntimeIdentity,
        "migration 0002_llm_audit.sql was applied by app_user, not by the admin role migration_owner",
    );
    assert_eq!(v.relation.as_deref(), Some("0002_llm_audit.sql"));

    // A database some other tool migrated has no ledger of rlsgate's: the catalog decides who
    // the schema belongs to, so a correct one can pass.
    as_superuser(&db, "DROP TABLE rlsgate_migrations").await;
    let o = runtime_identity::check_migrations(&oracle, &subject)
        .await
        .unwrap();
    assert!(o.iter().all(|o| o.status == Status::Holds), "{o:?}");
    assert!(o.iter().any(|o| o.probe == "catalog:nspowner"), "{o:?}");

    // ... and it is violated by an object someone else owns, or CREATE held by the runtime.
    as_superuser(
        &db,
        "CREATE FUNCTION public.made_by_hand() RETURNS int LANGUAGE sql AS 'SELECT 1';
         GRANT CREATE ON SCHEMA public TO app_user;",
    )
    .await;
    let o = runtime_identity::check_migrations(&oracle, &subject)
        .await
        .unwrap();
    assert_violated(
        &o,
        InvariantId::RuntimeIdentity,
        "function public.made_by_hand() is owned by postgres, not by the admin role migration_owner",
    );
    assert_violated(
        &o,
        InvariantId::RuntimeIdentity,
        "the runtime role app_user can CREATE in schema public: it could have applied the schema",
    );

    // Nothing in the schemas at all: nothing to judge.
    let mut empty = subject.clone();
    empty.schemas = vec!["pg_toast_nothing".into()];
    let o = runtime_identity::check_migrations(&oracle, &empty)
        .await
        .unwrap();
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(o[0].undecided, Some(Undecided::NothingToCheck));
}

#[tokio::test]
async fn a_runtime_role_that_does_not_exist_is_one_violation() {
    let db = fresh(&[]).await;
    let oracle = db.connect(Role::Superuser).await.unwrap();
    let mut subject = Subject::reference();
    subject.runtime_role = "no_such_role".into();
    let o = least_privilege::check(&oracle, &subject).await.unwrap();
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(o[0].status, Status::Violated);
    assert_eq!(o[0].detail, "the runtime role no_such_role does not exist");
    assert!(privileges::matrix(&oracle, &subject).await.is_err());
    let identity = runtime_identity::check_role(&oracle, &subject)
        .await
        .unwrap();
    assert_violated(
        &identity,
        InvariantId::RuntimeIdentity,
        "the runtime role no_such_role does not exist",
    );
}
