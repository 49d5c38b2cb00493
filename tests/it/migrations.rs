//! Migrations run as migration_owner, each file atomically, checksummed, re-runnable.
use rlsgate::{Migration, MigrationSet, Role};

use crate::support::shared_server;

fn set(files: &[(&str, &str)]) -> MigrationSet {
    let migrations = files
        .iter()
        .map(|(n, sql)| Migration::new(n, *sql).unwrap())
        .collect();
    MigrationSet::from_migrations(migrations, "test set").unwrap()
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
