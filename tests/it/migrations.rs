//! Migrations run as migration_owner, each file atomically, checksummed, re-runnable; every
//! layout (rlsgate, Supabase, sqlx, golang-migrate, Flyway, refinery, diesel, dbmate) applies
//! its up migrations only; marked files run outside a transaction.
use rlsgate::migrations::Format;
use rlsgate::{Database, Migration, MigrationSet, Role};

use crate::support::shared_server;

fn set(files: &[(&str, &str)]) -> MigrationSet {
    let migrations = files
        .iter()
        .map(|(n, sql)| Migration::new(n, *sql).unwrap())
        .collect();
    MigrationSet::from_migrations(migrations, "test set").unwrap()
}

/// A directory holding `files` (`name`, text); names may have one subdirectory.
fn directory(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// Whether `relation` exists, as the admin sees it.
async fn exists(db: &Database, relation: &str) -> bool {
    let admin = db.connect(Role::MigrationOwner).await.unwrap();
    admin
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&relation])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn the_reference_migrations_ran_as_migration_owner_who_owns_every_relation() {
    let server = shared_server().await;
    let db = server.fresh_database().await.unwrap();
    let admin = db.connect(Role::MigrationOwner).await.unwrap();
    let applied = rlsgate::migrations::applied_by(&admin).await.unwrap();
    assert_eq!(applied.len(), MigrationSet::reference().migrations().len());
    assert!(
        applied.values().all(|r| r == "migration_owner"),
        "{applied:?}"
    );
    let owners: Vec<(String, String)> = admin
        .query(
            "SELECT c.relname::text, pg_get_userbyid(c.relowner)::text FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r','p','v','m','S','i') ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(owners.iter().any(|(t, _)| t == "llm_api_calls"));
    let foreign: Vec<_> = owners
        .iter()
        .filter(|(_, o)| o != "migration_owner")
        .collect();
    assert!(
        foreign.is_empty(),
        "relations not owned by migration_owner: {foreign:?}"
    );
    let db_owner: String = admin
        .query_one("SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(db_owner, "migration_owner");
}

#[tokio::test]
async fn a_failing_migration_rolls_back_whole_and_names_the_file_and_statement() {
    let server = shared_server().await;
    let db = server.empty_database().await.unwrap();
    let mut admin = db.connect(Role::MigrationOwner).await.unwrap();
    let migrations = set(&[
        ("0001_ok.sql", "CREATE TABLE a (id int);"),
        (
            "0002_broken.sql",
            "CREATE TABLE b (id int);\n\nINSERT INTO no_such_table VALUES (1);",
        ),
    ]);
    let err = migrations
        .apply(&mut admin, "migration_owner")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(err.is_migration(), "{text}");
    assert!(
        text.contains("migration 0002_broken.sql failed at statement 2 (line 3)"),
        "{text}"
    );
    assert!(text.contains("42P01"), "{text}");
    assert!(text.contains("applied before it: 0001_ok.sql"), "{text}");
    let b: Option<String> = admin
        .query_one("SELECT to_regclass('b')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        b, None,
        "the failed migration's first statement was left applied"
    );
    let recorded: Vec<String> = admin
        .query("SELECT name FROM rlsgate_migrations ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(recorded, ["0001_ok.sql"]);
}

#[tokio::test]
async fn an_edited_migration_is_refused_and_a_rerun_applies_only_new_files() {
    let server = shared_server().await;
    let db = server.empty_database().await.unwrap();
    let mut admin = db.connect(Role::MigrationOwner).await.unwrap();
    let first = set(&[("0001_a.sql", "CREATE TABLE a (id int);")]);
    assert_eq!(
        first
            .apply(&mut admin, "migration_owner")
            .await
            .unwrap()
            .applied,
        ["0001_a.sql"]
    );
    let again = first.apply(&mut admin, "migration_owner").await.unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(again.to_string(), "no new migrations (1 already applied)");
    let grown = set(&[
        ("0001_a.sql", "CREATE TABLE a (id int);"),
        ("0002_b.sql", "CREATE TABLE b (id int);"),
    ]);
    assert_eq!(
        grown
            .apply(&mut admin, "migration_owner")
            .await
            .unwrap()
            .applied,
        ["0002_b.sql"]
    );
    let edited = set(&[
        ("0001_a.sql", "CREATE TABLE a (id bigint);"),
        ("0002_b.sql", "CREATE TABLE b (id int);"),
    ]);
    let err = edited
        .apply(&mut admin, "migration_owner")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("migration 0001_a.sql was edited after it was applied"),
        "{err}"
    );
    let missing = set(&[("0002_b.sql", "CREATE TABLE b (id int);")]);
    let err = missing
        .apply(&mut admin, "migration_owner")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("0001_a.sql was applied to this database but is missing"),
        "{err}"
    );
}

#[tokio::test]
async fn migrations_refuse_to_run_as_the_runtime_role() {
    let server = shared_server().await;
    let db = server.empty_database().await.unwrap();
    let mut runtime = db.connect(Role::Runtime).await.unwrap();
    let err = set(&[("0001_a.sql", "CREATE TABLE a (id int);")])
        .apply(&mut runtime, "migration_owner")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "migrations must run as the admin role migration_owner, but this connection is app_user"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn loading_a_directory_refuses_malformed_files_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("0001_ok.sql"), "SELECT 1;").unwrap();
    std::fs::write(dir.path().join("README.md"), "ignored").unwrap();
    assert_eq!(
        MigrationSet::load(dir.path()).unwrap().migrations().len(),
        1
    );
    std::fs::write(dir.path().join("0002_open.sql"), "SELECT 'never closed;").unwrap();
    let err = MigrationSet::load(dir.path()).unwrap_err();
    assert!(
        err.to_string()
            .contains("migration 0002_open.sql is malformed: string opened on line 1"),
        "{err}"
    );
    let err = MigrationSet::load(&dir.path().join("nope")).unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot read the migrations directory"),
        "{err}"
    );
}

#[tokio::test]
async fn a_search_path_set_by_one_file_moves_neither_the_ledger_nor_the_next_file() {
    let server = shared_server().await;
    let db = server.empty_database().await.unwrap();
    let mut admin = db.connect(Role::MigrationOwner).await.unwrap();
    let before: String = admin
        .query_one("SELECT current_setting('search_path')", &[])
        .await
        .unwrap()
        .get(0);
    let migrations = set(&[
        (
            "0001_app.sql",
            "CREATE SCHEMA app;\nSET search_path = app;\nCREATE TABLE t (id int);\n\
             CREATE TEMP TABLE scratch (id int);",
        ),
        (
            "0002_default.sql",
            "CREATE TABLE u (id int);\nCREATE TEMP TABLE scratch (id int);",
        ),
        (
            "0003_pg_dump.sql",
            "SELECT pg_catalog.set_config('search_path', '', false);\n\
             CREATE TABLE public.v (id int);",
        ),
        ("0004_default_again.sql", "CREATE TABLE w (id int);"),
    ]);
    let applied = migrations
        .apply(&mut admin, "migration_owner")
        .await
        .unwrap();
    assert_eq!(applied.applied.len(), 4, "{applied}");
    let row = admin
        .query_one(
            "SELECT to_regclass('app.t')::text, to_regclass('public.u')::text,
                    to_regclass('app.u')::text, to_regclass('public.w')::text",
            &[],
        )
        .await
        .unwrap();
    let found: [Option<String>; 4] = [row.get(0), row.get(1), row.get(2), row.get(3)];
    assert!(found[0].is_some(), "app.t is missing: {found:?}");
    assert!(found[1].is_some(), "u did not land in public: {found:?}");
    assert_eq!(found[2], None, "u landed in app: {found:?}");
    assert!(found[3].is_some(), "w did not land in public: {found:?}");
    let recorded: Vec<String> = admin
        .query(
            "SELECT name FROM public.rlsgate_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        recorded,
        [
            "0001_app.sql",
            "0002_default.sql",
            "0003_pg_dump.sql",
            "0004_default_again.sql"
        ]
    );
    let after: String = admin
        .query_one("SELECT current_setting('search_path')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        after, before,
        "the migrations left their search_path behind"
    );
    let again = migrations
        .apply(&mut admin, "migration_owner")
        .await
        .unwrap();
    assert_eq!(again.to_string(), "no new migrations (4 already applied)");
}

#[tokio::test]
async fn sql_standard_function_and_procedure_bodies_apply_on_the_server() {
    let server = shared_server().await;
    let db = server.empty_database().await.unwrap();
    let mut admin = db.connect(Role::MigrationOwner).await.unwrap();
    let migrations = set(&[
        (
            "0001_bodies.sql",
            "CREATE TABLE counts (n int NOT NULL);\n\
             -- a SQL-standard body; its inner semicolons do not end the CREATE\n\
             CREATE FUNCTION sign_of(x int) RETURNS int LANGUAGE sql IMMUTABLE\n\
             BEGIN ATOMIC\n\
               SELECT CASE WHEN x > 0 THEN 1 WHEN x < 0 THEN -1 ELSE 0 END;\n\
             END;\n\
             create procedure bump(by int) language sql\n\
             begin atomic\n\
               insert into counts values (by);\n\
               update counts set n = n + case when by > 0 then 0 else 1 end;\n\
             end;\n\
             CREATE FUNCTION plain() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;",
        ),
        ("0002_use.sql", "CALL bump(2);\nCALL bump(-3);"),
    ]);
    let applied = migrations
        .apply(&mut admin, "migration_owner")
        .await
        .unwrap();
    assert_eq!(applied.applied, ["0001_bodies.sql", "0002_use.sql"]);
    let row = admin
        .query_one(
            "SELECT sign_of(-7), sign_of(0), sign_of(4), plain(),
                    (SELECT array_agg(n ORDER BY n) FROM counts)",
            &[],
        )
        .await
        .unwrap();
    let signs: (i32, i32, i32, i32) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(signs, (-1, 0, 1, 1));
    let counts: Vec<i32> = row.get(4);
    assert_eq!(counts, [-2, 3]);
}

/// A statement that fails: in a down migration, it proves the down migration never ran.
const FAILS: &str = "SELECT 1 / 0;";

#[rstest::rstest]
#[case::rlsgate(None, &[
    ("0001_t.sql", "CREATE TABLE t (id int);"),
    ("0002_i.sql", "-- rlsgate:no-transaction\nCREATE INDEX CONCURRENTLY t_id ON t (id);"),
    ("README.md", "ignored"),
], &["0001_t.sql", "0002_i.sql"])]
#[case::supabase(Some(Format::Supabase), &[
    ("20240101120000_t.sql", "CREATE TABLE t (id int);"),
    ("20240102120000_i.sql", "-- rlsgate:no-transaction\nCREATE INDEX CONCURRENTLY t_id ON t (id);"),
], &["20240101120000_t.sql", "20240102120000_i.sql"])]
#[case::sqlx(None, &[
    ("20240101120000_t.up.sql", "CREATE TABLE t (id int);"),
    ("20240101120000_t.down.sql", FAILS),
    ("20240102120000_i.sql", "-- no-transaction\nCREATE INDEX CONCURRENTLY t_id ON t (id);"),
], &["20240101120000_t.up.sql", "20240102120000_i.sql"])]
#[case::golang_migrate(Some(Format::GolangMigrate), &[
    ("000001_t.up.sql", "BEGIN;\nCREATE TABLE t (id int);\nCOMMIT;\n"),
    ("000001_t.down.sql", FAILS),
    ("000002_i.up.sql", "-- rlsgate:no-transaction\nCREATE INDEX CONCURRENTLY t_id ON t (id);"),
    ("000002_i.down.sql", FAILS),
], &["000001_t.up.sql", "000002_i.up.sql"])]
#[case::flyway(Some(Format::Flyway), &[
    ("V1__t.sql", "CREATE TABLE t (id int);"),
    ("U1__t.sql", FAILS),
    ("R__v.sql", "CREATE OR REPLACE VIEW v AS SELECT id FROM t JOIN later USING (id);"),
    ("more/V2__i.sql", "CREATE INDEX CONCURRENTLY t_id ON t (id);"),
    ("more/V2__i.sql.conf", "executeInTransaction=false\n"),
    ("V3__later.sql", "CREATE TABLE later (id int);"),
], &["V1__t.sql", "more/V2__i.sql", "V3__later.sql", "R__v.sql"])]
#[case::refinery(Some(Format::Refinery), &[
    ("V1__t.sql", "CREATE TABLE t (id int);"),
    ("U2__i.sql", "-- refinery:noTransaction\nCREATE INDEX CONCURRENTLY t_id ON t (id);"),
], &["V1__t.sql", "U2__i.sql"])]
#[case::diesel(None, &[
    ("00000000000000_diesel_initial_setup/up.sql", "CREATE TABLE t (id int);"),
    ("00000000000000_diesel_initial_setup/down.sql", FAILS),
    ("2024-01-02-120000_index/up.sql", "CREATE INDEX CONCURRENTLY t_id ON t (id);"),
    ("2024-01-02-120000_index/down.sql", FAILS),
    ("2024-01-02-120000_index/metadata.toml", "run_in_transaction = false\n"),
    (".keep", ""),
], &["00000000000000_diesel_initial_setup/up.sql", "2024-01-02-120000_index/up.sql"])]
#[case::dbmate(None, &[
    ("20240101120000_t.sql", "-- migrate:up\nCREATE TABLE t (id int);\n\n-- migrate:down\nSELECT 1 / 0;\n"),
    ("20240102120000_i.sql", "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n-- migrate:down transaction:false\nDROP INDEX CONCURRENTLY t_id;\nSELECT 1 / 0;\n"),
], &["20240101120000_t.sql", "20240102120000_i.sql"])]
#[tokio::test]
async fn every_layout_applies_its_up_migrations_and_never_a_down_one(
    #[case] format: Option<Format>,
    #[case] files: &[(&str, &str)],
    #[case] expected: &[&str],
) {
    let dir = directory(files);
    let set = MigrationSet::load_as(dir.path(), format).unwrap();
    let server = shared_server().await;
    let db = server.empty_database().await.unwrap();
    let mut admin = db.connect(Role::MigrationOwner).await.unwrap();
    let applied = set.apply(&mut admin, "migration_owner").await.unwrap();
    assert_eq!(applied.applied, expected, "{}", set.origin());
    // The table of the first file, and the index a file outside a transaction built
    // (CREATE INDEX CONCURRENTLY fails inside one), valid.
    assert!(exists(&db, "public.t").await);
    let valid: bool = admin
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.t_id'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(valid);
    let again = set.apply(&mut admin, "migration_owner").await.unwrap();
    assert!(again.applied.is_empty(), "{again}");
}

#[tokio::test]
async fn a_file_outside_a_transaction_that_fails_names_its_line_and_keeps_what_ran() {
    let server = shared_server().await;
    let db = server.empty_database().await.unwrap();
    let mut admin = db.connect(Role::MigrationOwner).await.unwrap();
    let migrations = set(&[
        ("0001_t.sql", "CREATE TABLE t (id int);"),
        (
            "0002_indexes.sql",
            "-- rlsgate:no-transaction\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n\n\
             CREATE INDEX CONCURRENTLY u_id ON no_such_table (id);\nCREATE TABLE after (id int);",
        ),
    ]);
    let err = migrations
        .apply(&mut admin, "migration_owner")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("migration 0002_indexes.sql failed at statement 2 (line 4)"),
        "{text}"
    );
    assert!(text.contains("42P01"), "{text}");
    assert!(
        text.contains("runs outside a transaction (-- rlsgate:no-transaction), so it cannot be rolled back whole"),
        "{text}"
    );
    assert!(
        exists(&db, "public.t_id").await,
        "the statement before it stays"
    );
    assert!(!exists(&db, "public.after").await);
    let recorded: Vec<String> = admin
        .query("SELECT name FROM rlsgate_migrations ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(recorded, ["0001_t.sql"]);
}

#[tokio::test]
async fn create_index_concurrently_in_a_transaction_names_the_marker() {
    let server = shared_server().await;
    let db = server.empty_database().await.unwrap();
    let mut admin = db.connect(Role::MigrationOwner).await.unwrap();
    let err = set(&[(
        "0001_t.sql",
        "CREATE TABLE t (id int);\nCREATE INDEX CONCURRENTLY t_id ON t (id);",
    )])
    .apply(&mut admin, "migration_owner")
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("statement 2 (line 2)"), "{text}");
    assert!(text.contains("needs `-- rlsgate:no-transaction`"), "{text}");
    assert!(
        !exists(&db, "public.t").await,
        "the file was rolled back whole"
    );
}

#[rstest::rstest]
#[case::mixed(None, &[("0001_a.sql", ""), ("V2__b.sql", "")],
    "mixes migration layouts: 0001_a.sql is a <version>_name.sql file (rlsgate, Supabase, sqlx, dbmate), V2__b.sql is a V<n>__/U<n>__/R__ file")]
#[case::diesel_and_files(None, &[("2024-01-01-000000_a/up.sql", ""), ("0002_b.up.sql", "")],
    "mixes migration layouts: 0002_b.up.sql is an up/down file (sqlx, golang-migrate), 2024-01-01-000000_a/up.sql is a diesel migration directory")]
#[case::unknown(None, &[("0001_a.sql", ""), ("seed.sql", "")],
    "seed.sql in ")]
#[case::unknown_named(None, &[("0001_a.sql", ""), ("seed.sql", "")],
    "is not a migration file of format rlsgate (NNNN_name.sql) nor of any layout rlsgate reads; rename it, or move it out")]
#[case::undo_or_unversioned(None, &[("V1__a.sql", ""), ("U1__a.sql", "")],
    "U1__a.sql in ")]
#[case::undo_or_unversioned_fix(None, &[("V1__a.sql", ""), ("U1__a.sql", "")],
    "set format = \"flyway\" or format = \"refinery\"")]
#[case::wrong_format(Some(Format::GolangMigrate), &[("0001_a.sql", "")],
    "0001_a.sql in ")]
#[case::wrong_format_fix(Some(Format::GolangMigrate), &[("0001_a.sql", "")],
    "but the directory's format is golang-migrate (<version>_name.up.sql/.down.sql)")]
#[case::repeatable_in_refinery(Some(Format::Refinery), &[("R__v.sql", "")],
    "R__v.sql in ")]
#[case::dotted_flyway(None, &[("V1.1__a.sql", "")],
    "V1.1__a.sql has the version 1.1, of several parts")]
#[case::dbmate_without_up(Some(Format::Dbmate), &[("20240101000000_a.sql", "CREATE TABLE a ();")],
    "dbmate migration 20240101000000_a.sql has no `-- migrate:up` line")]
#[case::dbmate_mixed(None, &[("20240101000000_a.sql", "-- migrate:up\n"), ("20240102000000_b.sql", "SELECT 1;")],
    "dbmate migration 20240102000000_b.sql has no `-- migrate:up` line")]
#[case::shared_version(None, &[("0001_a.sql", ""), ("0001_b.sql", "")],
    "migrations 0001_a.sql and 0001_b.sql share version 1")]
#[case::diesel_name(None, &[("create_users/up.sql", "")],
    "create_users in ")]
#[case::golang_transaction_hint(None, &[("000001_a.up.sql", "BEGIN;\nCREATE TABLE a ();\nCOMMIT;")],
    "set format = \"golang-migrate\"")]
#[case::misplaced_marker(None, &[("0001_a.sql", "SELECT 1;\n-- rlsgate:no-transaction\n")],
    "migration 0001_a.sql line 2: `-- rlsgate:no-transaction` comes after the first statement")]
fn directories_no_layout_reads_are_refused_naming_the_file_and_the_fix(
    #[case] format: Option<Format>,
    #[case] files: &[(&str, &str)],
    #[case] expected: &str,
) {
    let dir = directory(files);
    let err = MigrationSet::load_as(dir.path(), format).unwrap_err();
    assert!(err.is_migration(), "{err}");
    assert!(err.to_string().contains(expected), "{expected}\n{err}");
}

#[tokio::test]
async fn a_ledger_an_older_rlsgate_created_is_widened_for_64_bit_versions() {
    let server = shared_server().await;
    let db = server.empty_database().await.unwrap();
    let mut admin = db.connect(Role::MigrationOwner).await.unwrap();
    // The ledger as every earlier rlsgate created it, with one file recorded.
    let old = Migration::new("0001_t.sql", "CREATE TABLE t (id int);").unwrap();
    admin
        .batch_execute(&format!(
            "CREATE TABLE public.rlsgate_migrations (
                 version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                 applied_by text NOT NULL DEFAULT current_user,
                 applied_at timestamptz NOT NULL DEFAULT now());
             CREATE TABLE t (id int);
             INSERT INTO public.rlsgate_migrations (version, name, checksum)
                 VALUES (1, '0001_t.sql', '{}');",
            old.checksum
        ))
        .await
        .unwrap();
    // Files that fit in 32 bits: read and applied without touching the column.
    let small = set(&[
        ("0001_t.sql", "CREATE TABLE t (id int);"),
        ("0002_u.sql", "CREATE TABLE u (id int);"),
    ]);
    let applied = small.apply(&mut admin, "migration_owner").await.unwrap();
    assert_eq!(applied.applied, ["0002_u.sql"]);
    assert_eq!(applied.unchanged, ["0001_t.sql"]);
    assert_eq!(version_type(&admin).await, "integer");
    // A timestamp version: the column is widened in place and the rows are kept.
    let wide = set(&[
        ("0001_t.sql", "CREATE TABLE t (id int);"),
        ("0002_u.sql", "CREATE TABLE u (id int);"),
        ("20240131120000_v.sql", "CREATE TABLE v (id int);"),
    ]);
    let applied = wide.apply(&mut admin, "migration_owner").await.unwrap();
    assert_eq!(applied.applied, ["20240131120000_v.sql"]);
    assert_eq!(version_type(&admin).await, "bigint");
    let versions: Vec<i64> = admin
        .query(
            "SELECT version FROM rlsgate_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2, 20_240_131_120_000]);
}

async fn version_type(admin: &tokio_postgres::Client) -> String {
    admin
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = 'public.rlsgate_migrations'::regclass AND attname = 'version'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_repeatable_migration_runs_after_the_versioned_ones_and_again_when_it_changes() {
    let server = shared_server().await;
    let db = server.empty_database().await.unwrap();
    let mut admin = db.connect(Role::MigrationOwner).await.unwrap();
    let load = |view: &str| {
        let dir = directory(&[
            ("V1__t.sql", "CREATE TABLE t (id int, n int);"),
            ("R__v.sql", view),
        ]);
        MigrationSet::load_as(dir.path(), Some(Format::Flyway)).unwrap()
    };
    let first = load("CREATE OR REPLACE VIEW v AS SELECT id FROM t;");
    assert_eq!(
        first
            .apply(&mut admin, "migration_owner")
            .await
            .unwrap()
            .applied,
        ["V1__t.sql", "R__v.sql"]
    );
    assert!(
        first
            .apply(&mut admin, "migration_owner")
            .await
            .unwrap()
            .applied
            .is_empty()
    );
    let changed = load("CREATE OR REPLACE VIEW v AS SELECT id, n FROM t;");
    let applied = changed.apply(&mut admin, "migration_owner").await.unwrap();
    assert_eq!(applied.applied, ["R__v.sql"]);
    assert_eq!(applied.unchanged, ["V1__t.sql"]);
    let columns: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.v'::regclass AND attnum > 0",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(columns, 2);
    assert!(first.origin().ends_with("(flyway)"), "{}", first.origin());
}
