//! An existing database, checked by URL: on a scratch copy by default (so nothing is ever
//! written to it), or in place with `--in-place` (only what rolls back); a correct database some
//! other tool migrated passes; tenant ids rlsgate generates pass over the ids in use; a
//! database others are connected to is not copied, and the error names both ways out.
//!
//! The schema is an append-only ledger: `entries` and `audit_log` refuse UPDATE and DELETE in a
//! trigger, and an AFTER INSERT trigger on `entries` writes `audit_log` rows, so a check that
//! wrote into this database could not even clean up after itself.
use rlsgate::campaign::{ProjectOptions, Source};
use rlsgate::project::ProjectConfig;
use rlsgate::report::{Placement, Report, Verdict};
use rlsgate::{Database, Role, Settings};

use crate::support::{findings, shared_server};

const SCHEMA: &str = "
CREATE TABLE public.accounts (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE public.entries (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES public.accounts (id),
    amount_cents bigint NOT NULL,
    memo text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE public.audit_log (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL,
    entry_id bigint NOT NULL,
    action text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION public.forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END $$;
CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON public.entries
    FOR EACH ROW EXECUTE FUNCTION public.forbid_change();
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON public.audit_log
    FOR EACH ROW EXECUTE FUNCTION public.forbid_change();
CREATE FUNCTION public.audit_entry() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, public AS $$
BEGIN
    INSERT INTO public.audit_log (account_id, entry_id, action) VALUES (NEW.account_id, NEW.id, 'insert');
    RETURN NEW;
END $$;
CREATE TRIGGER entries_audit AFTER INSERT ON public.entries
    FOR EACH ROW EXECUTE FUNCTION public.audit_entry();
REVOKE EXECUTE ON FUNCTION public.forbid_change(), public.audit_entry() FROM PUBLIC;
ALTER TABLE public.entries ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
ALTER TABLE public.audit_log ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY account_isolation ON public.entries
    USING (account_id = nullif(current_setting('app.account_id', true), '')::bigint)
    WITH CHECK (account_id = nullif(current_setting('app.account_id', true), '')::bigint);
CREATE POLICY account_isolation ON public.audit_log
    USING (account_id = nullif(current_setting('app.account_id', true), '')::bigint)
    WITH CHECK (account_id = nullif(current_setting('app.account_id', true), '')::bigint);
GRANT SELECT, INSERT ON public.entries TO ledger_app;
GRANT USAGE ON SEQUENCE public.entries_id_seq TO ledger_app;
GRANT SELECT ON public.audit_log TO ledger_app;
";

const CONFIG: &str = "
[roles]
admin = \"ledger_owner\"
runtime = \"ledger_app\"

[tenant]
setting = \"app.account_id\"
columns = [\"account_id\"]
table = \"public.accounts\"
key = \"id\"

[privileges.relations]
\"public.entries\" = [\"SELECT\", \"INSERT\"]
\"public.audit_log\" = [\"SELECT\"]

[privileges.sequences]
\"public.entries_id_seq\" = [\"USAGE\"]
";

/// The ledger, migrated by hand as its owner (no migration ledger of rlsgate's), with two
/// accounts and their entries (and the audit rows the trigger wrote). Returns the database
/// and the runtime's URL.
async fn ledger() -> (Database, String) {
    let server = shared_server().await;
    let owner = server
        .project_role("ledger_owner", true)
        .await
        .unwrap()
        .unwrap();
    let app = server
        .project_role("ledger_app", true)
        .await
        .unwrap()
        .unwrap();
    let db = server
        .project_database("ledger_owner", "ledger_app")
        .await
        .unwrap();
    let as_owner = rlsgate::Server::connect_with(&server.config(&owner, db.name()))
        .await
        .unwrap();
    as_owner.batch_execute(SCHEMA).await.unwrap();
    let su = db.connect(Role::Superuser).await.unwrap();
    for (account, memo) in [(1, "opening"), (1, "coffee"), (2, "opening")] {
        su.batch_execute(&format!(
            "BEGIN;
             INSERT INTO public.accounts VALUES ({account}, 'account {account}') ON CONFLICT DO NOTHING;
             SELECT set_config('app.account_id', '{account}', true);
             INSERT INTO public.entries (account_id, amount_cents, memo) VALUES ({account}, 500, '{memo}');
             COMMIT;"
        ))
        .await
        .unwrap();
    }
    let runtime = server.url(&app, db.name());
    (db, runtime)
}

/// Everything a check could change: each table's row count and content checksum, each
/// sequence's position, and the catalog (the roles of the ledger and their memberships, RLS
/// flags, grants, policies, functions, triggers, the database's owner, ACL and settings).
/// Read on a connection of its own, closed before it returns.
async fn fingerprint(db: &Database) -> Vec<String> {
    let mut out = checksums(
        db,
        &["public.accounts", "public.entries", "public.audit_log"],
    )
    .await;
    let su = db.connect(Role::Superuser).await.unwrap();
    for sequence in ["public.entries_id_seq", "public.audit_log_id_seq"] {
        let row = su
            .query_one(
                &format!("SELECT last_value::text || ' ' || is_called::text FROM {sequence}"),
                &[],
            )
            .await
            .unwrap();
        out.push(format!("{sequence}: {}", row.get::<_, String>(0)));
    }
    for query in [
        "SELECT string_agg(format('%s %s %s %s %s %s', rolname, rolsuper, rolcanlogin, rolbypassrls, rolcreaterole, rolpassword), '; ' ORDER BY rolname) FROM pg_authid WHERE rolname LIKE 'ledger\\_%'",
        "SELECT coalesce(string_agg(format('%s %s', roleid::regrole, member::regrole), '; ' ORDER BY 1), '') FROM pg_auth_members WHERE member::regrole::text LIKE 'ledger\\_%' OR roleid::regrole::text LIKE 'ledger\\_%'",
        "SELECT string_agg(format('%s %s %s %s %s', oid::regclass, relrowsecurity, relforcerowsecurity, relacl, relowner::regrole), '; ' ORDER BY oid::regclass::text) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
        "SELECT string_agg(format('%s %s %s %s %s %s', polrelid::regclass, polname, polcmd, polpermissive, pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid)), '; ' ORDER BY 1) FROM pg_policy",
        "SELECT string_agg(format('%s %s %s %s %s', oid::regprocedure, md5(prosrc), prosecdef, proacl, proconfig), '; ' ORDER BY 1) FROM pg_proc WHERE pronamespace = 'public'::regnamespace",
        "SELECT string_agg(format('%s %s %s', tgrelid::regclass, tgname, tgenabled), '; ' ORDER BY 1) FROM pg_trigger WHERE NOT tgisinternal",
        "SELECT format('%s %s %s', nspowner::regrole, nspacl, (SELECT count(*) FROM pg_default_acl)) FROM pg_namespace WHERE nspname = 'public'",
        "SELECT format('%s %s %s', datdba::regrole, datacl, datconnlimit) FROM pg_database WHERE datname = current_database()",
        "SELECT coalesce(string_agg(format('%s %s', setrole, setconfig), '; '), '') FROM pg_db_role_setting WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())",
    ] {
        out.push(
            su.query_one(query, &[])
                .await
                .unwrap()
                .get::<_, Option<String>>(0)
                .unwrap_or_default(),
        );
    }
    out
}

async fn check(db: &Database, runtime_url: &str, in_place: bool) -> rlsgate::Result<Report> {
    let source = Source {
        database_url: Some(db.url(Role::Superuser).await.unwrap()),
        runtime_url: Some(runtime_url.to_string()),
        in_place,
    };
    let config = ProjectConfig::parse(CONFIG, std::path::Path::new(".")).unwrap();
    rlsgate::campaign::check_project(
        &Settings::from_env().unwrap(),
        &config,
        &source,
        &ProjectOptions {
            cases: 8,
            seed: 5,
            ..ProjectOptions::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_database_passes_on_a_scratch_copy_and_is_left_exactly_as_it_was() {
    let (db, runtime) = ledger().await;
    let before = fingerprint(&db).await;
    let report = check(&db, &runtime, false).await.unwrap();
    // No migration ledger of rlsgate's: who the schema belongs to is read from the catalog.
    assert_eq!(report.verdict, Verdict::Pass, "{}", findings(&report));
    assert_eq!(report.placement, Placement::ScratchCopy);
    let dml = report.cases_run;
    assert!(dml > 0, "the DML property ran (on the copy)");
    assert_eq!(
        fingerprint(&db).await,
        before,
        "the check changed the database"
    );

    // In place: only what rolls back runs; it says what it skipped, and leaves the database
    // as it was too.
    let report = check(&db, &runtime, true).await.unwrap();
    assert_eq!(report.placement, Placement::InPlace);
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.starts_with("the DML property")),
        "{:?}",
        report.skipped
    );
    assert_eq!(report.cases_run, 0, "no DML sequence commits in place");
    assert!(report.violated().is_empty(), "{}", findings(&report));
    assert_eq!(
        fingerprint(&db).await,
        before,
        "--in-place changed the database"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_tenant_ids_pass_over_the_ids_in_use() {
    let (db, runtime) = ledger().await;
    let first = check(&db, &runtime, false).await.unwrap();
    let taken = first.project.as_ref().unwrap().tenants.clone();
    assert_eq!(taken.len(), 2, "{taken:?}");
    // The user's database now holds accounts with exactly the ids the check generated.
    let su = db.connect(Role::Superuser).await.unwrap();
    for id in &taken {
        su.execute(
            "INSERT INTO public.accounts VALUES ($1::text::bigint, 'taken')",
            &[id],
        )
        .await
        .unwrap();
    }
    drop(su);
    let second = check(&db, &runtime, false).await.unwrap();
    let fresh = second.project.as_ref().unwrap().tenants.clone();
    assert!(
        fresh.iter().all(|id| !taken.contains(id)),
        "{fresh:?} reuses {taken:?}"
    );
    assert_eq!(second.verdict, Verdict::Pass, "{}", findings(&second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_in_use_is_not_copied_and_the_error_names_both_ways_out() {
    let (db, runtime) = ledger().await;
    let held = db.connect(Role::Superuser).await.unwrap();
    let e = check(&db, &runtime, false).await.unwrap_err();
    let text = e.to_string();
    assert!(e.is_config(), "{text}");
    for expected in [
        "no other session is connected",
        "disconnect them",
        "--in-place",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    // In place works while others are connected.
    let report = check(&db, &runtime, true).await.unwrap();
    assert_eq!(report.placement, Placement::InPlace);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_schema_in_place_probes_its_tenants_and_skips_the_worker() {
    let db = shared_server().await.fresh_database().await.unwrap();
    let su = db.connect(Role::Superuser).await.unwrap();
    for tenant in [
        "0c0ffee0-0000-4000-8000-00000000000a",
        "0c0ffee0-0000-4000-8000-00000000000b",
    ] {
        su.batch_execute(&format!(
            "INSERT INTO tenants (id, name) VALUES ('{tenant}', 'existing');
             INSERT INTO llm_api_calls (tenant_id, endpoint, model, request_id) VALUES ('{tenant}', 'route', 'm', 'r1');
             INSERT INTO llm_monthly_costs (tenant_id, month) VALUES ('{tenant}', '2026-01-01');
             INSERT INTO investigations (tenant_id, query) VALUES ('{tenant}', 'q');
             INSERT INTO budget_optimization_jobs (tenant_id) VALUES ('{tenant}');
             INSERT INTO worker_failed_jobs (id, task_id, task_name, worker, tenant_id, error_type, exception_class, error_message)
             VALUES (gen_random_uuid(), 't', 'app.tasks.llm.route', 'w', '{tenant}', 'application_error', 'E', 'boom');"
        ))
        .await
        .unwrap();
    }
    drop(su);
    let before = fingerprint_reference(&db).await;
    let source = Source {
        database_url: Some(db.url(Role::Superuser).await.unwrap()),
        runtime_url: Some(db.url(Role::Runtime).await.unwrap()),
        in_place: true,
    };
    let report = rlsgate::campaign::check(&source, &rlsgate::campaign::CampaignOptions::default())
        .await
        .unwrap();
    assert_eq!(report.placement, Placement::InPlace);
    assert_eq!(report.tasks.total, 0, "no task runs in place");
    // The probes decided on the existing tenants; the worker's invariants were skipped, so the
    // verdict is inconclusive, never a pass.
    assert_eq!(
        report.verdict,
        Verdict::Inconclusive,
        "{}",
        findings(&report)
    );
    assert!(report.violated().is_empty(), "{}", findings(&report));
    for id in [
        rlsgate::invariants::InvariantId::TenantIsolation,
        rlsgate::invariants::InvariantId::WriteCheck,
        rlsgate::invariants::InvariantId::NoContextClosed,
        rlsgate::invariants::InvariantId::ContextHygiene,
    ] {
        assert_eq!(
            report.invariant(id).status,
            rlsgate::invariants::Status::Holds,
            "{id}: {}",
            findings(&report)
        );
    }
    let durability = report.invariant(rlsgate::invariants::InvariantId::Durability);
    assert_eq!(
        durability.inconclusive[0].undecided,
        Some(rlsgate::invariants::Undecided::SkippedInPlace)
    );
    assert_eq!(fingerprint_reference(&db).await, before);
}

/// Row counts and checksums of the reference tables.
async fn fingerprint_reference(db: &Database) -> Vec<String> {
    checksums(
        db,
        &[
            "tenants",
            "llm_api_calls",
            "llm_monthly_costs",
            "investigations",
            "budget_optimization_jobs",
            "worker_failed_jobs",
        ],
    )
    .await
}

/// Each of `tables`' row count and content checksum, read on a connection of its own.
async fn checksums(db: &Database, tables: &[&str]) -> Vec<String> {
    let su = db.connect(Role::Superuser).await.unwrap();
    let mut out = Vec::new();
    for table in tables {
        let row = su
            .query_one(
                &format!(
                    "SELECT count(*)::text || ' ' || md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
                ),
                &[],
            )
            .await
            .unwrap();
        out.push(format!("{table}: {}", row.get::<_, String>(0)));
    }
    out
}
