//! No false pass, no false alarm: each probe counts as holding only when the thing under test
//! refused it. Hand-made projects, both ways: a correct design in a style whose statements fail
//! for other reasons (a policy that fails closed by raising, generated columns, append-only
//! triggers) holds; a broken design whose probes used to fail for their own reasons (and count
//! as refused) is violated or inconclusive, never "holds".
use std::collections::BTreeSet;

use rlsgate::Settings;
use rlsgate::campaign::{ProjectOptions, Source};
use rlsgate::invariants::{InvariantId, Status, Undecided};
use rlsgate::project::ProjectConfig;
use rlsgate::report::{Report, Verdict};

use crate::support::{findings, shared_server};

/// A project of one table `public.notes` (and `public.tenants`) whose roles are
/// `<prefix>_owner` and `<prefix>_app`: `schema` is its migration after the tables exist, with
/// `APP` standing for the runtime role.
async fn check(prefix: &str, schema: &str) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    let app = format!("{prefix}_app");
    std::fs::write(
        migrations.join("0001_schema.sql"),
        schema.replace("APP", &app),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rlsgate.toml"),
        format!(
            "[schema]\nmigrations = [\"migrations\"]\n\
             [roles]\nadmin = \"{prefix}_owner\"\nruntime = \"{app}\"\n\
             [tenant]\nsetting = \"app.tenant_id\"\ncolumns = [\"tenant_id\"]\ntable = \"public.tenants\"\nkey = \"id\"\n\
             [privileges]\npreset = \"dml-on-tenant-tables\"\n"
        ),
    )
    .unwrap();
    let config = ProjectConfig::load(dir.path()).unwrap();
    let _server = shared_server().await;
    rlsgate::campaign::check_project(
        &Settings::from_env().unwrap(),
        &config,
        &Source::default(),
        &ProjectOptions {
            cases: 8,
            seed: 3,
            ..ProjectOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{prefix}: {e}"))
}

/// The (invariant, probe) pairs of `status` on `relation`.
fn seen(report: &Report, status: Status, relation: &str) -> BTreeSet<(InvariantId, String)> {
    report
        .invariants
        .iter()
        .flat_map(|r| r.violations.iter().chain(&r.inconclusive))
        .filter(|o| o.status == status && o.relation.as_deref() == Some(relation))
        .map(|o| (o.invariant, o.probe.clone()))
        .collect()
}

const TABLES: &str = "CREATE TABLE public.tenants (id uuid PRIMARY KEY);
CREATE TABLE public.notes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id uuid NOT NULL REFERENCES public.tenants (id),
    body text NOT NULL,
    body_length int GENERATED ALWAYS AS (length(body)) STORED
);
ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.notes TO APP;
";

/// The usual policy: no context (NULL, or '' once a transaction-local setting ended) selects
/// nothing and rejects every write.
const POLICY: &str = "CREATE POLICY iso ON public.notes
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_and_identity_columns_leave_the_probes_decided() {
    // Copies of rows name only what an INSERT may name (OVERRIDING SYSTEM VALUE for the
    // identity): the probes are refused by the policy, not by 428C9.
    let report = check("gen_ok", &format!("{TABLES}{POLICY}")).await;
    assert_eq!(report.verdict, Verdict::Pass, "{}", findings(&report));
    // A fail-open policy on the same table: with no context every row is visible and writable.
    // Before, the no-context write failed with 428C9 (a GENERATED ALWAYS column) and held.
    let report = check(
        "gen_open",
        &format!(
            "{TABLES}CREATE POLICY iso ON public.notes
                USING (tenant_id = coalesce(nullif(current_setting('app.tenant_id', true), '')::uuid, tenant_id))
                WITH CHECK (tenant_id = coalesce(nullif(current_setting('app.tenant_id', true), '')::uuid, tenant_id));"
        ),
    )
    .await;
    let violated = seen(&report, Status::Violated, "public.notes");
    for probe in ["NOCTX-never-set", "NOCTX-never-set-write"] {
        assert!(
            violated.contains(&(InvariantId::NoContextClosed, probe.to_string())),
            "{probe}: {}",
            findings(&report)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_fails_closed_by_raising_holds_through_its_control() {
    // current_setting(name) without missing_ok raises 42704 before the setting was ever made,
    // and the cast of '' raises 22P02 after: closed, by error. The same statements in a tenant's
    // context go through, so the missing context refused them.
    let report = check(
        "raise_ok",
        &format!(
            "{TABLES}CREATE POLICY iso ON public.notes
                USING (tenant_id = current_setting('app.tenant_id')::uuid)
                WITH CHECK (tenant_id = current_setting('app.tenant_id')::uuid);"
        ),
    )
    .await;
    assert_eq!(report.verdict, Verdict::Pass, "{}", findings(&report));
    let closed = report.invariant(InvariantId::NoContextClosed);
    assert!(closed.checks >= 4, "{}", findings(&report));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_stopped_by_a_trigger_of_its_own_is_inconclusive_never_refused() {
    // Direct inserts and updates raise in a BEFORE trigger for the runtime (rows go through a
    // function elsewhere), over a fail-open policy: the trigger, not the policy, stops the
    // no-context write and the update of another tenant's row. Before, both held.
    let report = check(
        "trig_open",
        &format!(
            "{TABLES}CREATE POLICY iso ON public.notes USING (true) WITH CHECK (true);
             CREATE FUNCTION public.no_direct_writes() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF current_user = 'APP' THEN RAISE EXCEPTION 'write through the API'; END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER no_direct_writes BEFORE INSERT OR UPDATE ON public.notes
               FOR EACH ROW EXECUTE FUNCTION public.no_direct_writes();"
        ),
    )
    .await;
    assert_ne!(report.verdict, Verdict::Pass, "{}", findings(&report));
    let held: Vec<_> = report
        .invariants
        .iter()
        .filter(|r| r.id == InvariantId::NoContextClosed || r.id == InvariantId::WriteCheck)
        .flat_map(|r| r.inconclusive.iter())
        .filter(|o| o.undecided == Some(Undecided::FailedOtherwise))
        .map(|o| o.probe.as_str())
        .collect();
    for probe in ["NOCTX-never-set-write", "XDML-UPDATE", "INS"] {
        assert!(held.contains(&probe), "{probe}: {}", findings(&report));
    }
    // The READ in a tenant's context shows the leak the trigger cannot hide.
    assert!(
        report.violated().contains(&InvariantId::TenantIsolation),
        "{}",
        findings(&report)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_on_a_table_a_foreign_key_references_is_held_not_refused() {
    // TRUNCATE of a referenced table fails with 0A000 only after the privilege check passed:
    // the runtime holds TRUNCATE. Before, any error counted as refused.
    let report = check(
        "trunc",
        &format!(
            "{TABLES}{POLICY}
             CREATE TABLE public.note_tags (tenant_id uuid NOT NULL, note_id bigint NOT NULL REFERENCES public.notes (id), tag text NOT NULL);
             ALTER TABLE public.note_tags ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
             CREATE POLICY iso ON public.note_tags
                 USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
                 WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
             GRANT SELECT, INSERT, UPDATE, DELETE ON public.note_tags TO APP;
             GRANT TRUNCATE ON public.notes TO APP;"
        ),
    )
    .await;
    let ddl = report.invariant(InvariantId::RuntimeLacksDdl);
    assert!(
        ddl.violations.iter().any(|o| o.probe == "DDL:TRUNCATE"
            && o.relation.as_deref() == Some("public.notes")
            && o.sqlstate.as_deref() == Some("0A000")),
        "{}",
        findings(&report)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_materialized_view_never_refreshed_is_refreshed_and_its_leak_proven() {
    // WITH NO DATA: before, READ could not read it (55000) and was inconclusive. rlsgate
    // refreshes it on its own database, and every tenant then reads what the refresh captured.
    let report = check(
        "matview",
        &format!(
            "{TABLES}{POLICY}
             CREATE MATERIALIZED VIEW public.note_digest AS
                 SELECT tenant_id, count(*) AS notes FROM public.notes GROUP BY tenant_id WITH NO DATA;
             GRANT SELECT ON public.note_digest TO APP;"
        ),
    )
    .await;
    let violated = seen(&report, Status::Violated, "public.note_digest");
    assert!(
        violated.contains(&(InvariantId::TenantIsolation, "READ".to_string())),
        "{}",
        findings(&report)
    );
    assert!(
        violated.contains(&(InvariantId::RlsCoverage, "catalog:no-rls".to_string())),
        "{}",
        findings(&report)
    );
}
