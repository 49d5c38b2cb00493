//! `results.sarif`: the findings as SARIF 2.1.0, for code scanning (GitHub's, or any SARIF
//! viewer).
//!
//! - **Rules**: one per invariant of the report (its id, a short description, its statement),
//!   and one per invariant and probe that produced a result (`tenant-isolation/READ`), related
//!   to its invariant's rule.
//! - **Results**: a violation is an `error`; an inconclusive check a `warning` (never a pass,
//!   and the gate fails on it, but not proven: code scanning shows it without blocking on it as
//!   it would on an error); an accepted violation an `error` with an external suppression
//!   carrying its reason from `rlsgate.toml`; a note a `note`.
//! - **Locations**: the migration file and line that created the object (or the policy or grant
//!   the finding is about) when the project's schema came from its migrations
//!   ([`crate::migrations::origin`]); the object itself as a logical location always.
//! - **Fingerprints**: from the rule, the object and the finding's words with numbers masked
//!   (no UUIDs, ports, timestamps), so code scanning tracks one alert across commits.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::catalog::discovery::Discovery;
use crate::evidence::redact::redact;
use crate::invariants::{InvariantId, Observation, Status};
use crate::migrations::origin::{Origin, Origins};
use crate::report::{Report, Verdict};

/// The `$schema` of every file rlsgate writes: the OASIS SARIF 2.1.0 schema.
pub const SCHEMA_URI: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// The name of the partial fingerprint rlsgate computes.
pub const FINGERPRINT: &str = "rlsgateFinding/v1";

/// Render `report` as SARIF 2.1.0 (pretty-printed JSON).
pub fn render(report: &Report) -> String {
    let rules = Rules::of(report);
    let origins = report.project.as_ref().map(|p| &p.origins);
    let mut results = Vec::new();
    let mut seen = BTreeSet::new();
    for r in &report.invariants {
        let groups = [&r.violations, &r.inconclusive, &r.accepted, &r.notes];
        for o in groups.into_iter().flatten() {
            let result = result(o, &rules, report.project.as_ref(), origins);
            let print = &result["partialFingerprints"][FINGERPRINT];
            let key = (o.status, print.as_str().unwrap_or_default().to_string());
            if seen.insert(key) {
                results.push(result);
            }
        }
        if r.status == Status::Inconclusive && r.checks == 0 && r.inconclusive.is_empty() {
            results.push(json!({
                "ruleId": r.id.id(),
                "ruleIndex": rules.index[r.id.id()],
                "level": "warning",
                "message": { "text": format!("{}: nothing was checked", r.id) },
                "partialFingerprints": { FINGERPRINT: fingerprint(&[r.id.id(), "unchecked"]) },
            }));
        }
    }
    let sarif = json!({
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "rlsgate",
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "rules": rules.descriptors,
            }},
            "invocations": [invocation(report)],
            "results": results,
            "properties": {
                "verdict": report.verdict.as_str(),
                "mode": report.mode,
                "seed": report.seed,
                "invariants": report.invariants.iter()
                    .map(|r| (r.id.id().to_string(), Value::from(r.status.as_str())))
                    .collect::<serde_json::Map<_, _>>(),
            },
        }],
    });
    let mut out = serde_json::to_string_pretty(&sarif).expect("a JSON value serializes");
    out.push('\n');
    out
}

/// The run's invocation: whether it finished, its exit code, the command that reproduces it,
/// and why it stopped when a signal stopped it.
fn invocation(report: &Report) -> Value {
    let mut invocation = json!({
        "executionSuccessful": report.verdict != Verdict::Interrupted,
        "exitCode": report.exit_code(),
        "commandLine": redact(&report.reproduce),
    });
    if report.verdict == Verdict::Interrupted {
        invocation["toolExecutionNotifications"] = json!([{
            "level": "error",
            "message": { "text": "the run was interrupted before it decided anything: nothing here is a pass" },
        }]);
    }
    invocation
}

/// The rules of a report and where each is in the list.
struct Rules {
    descriptors: Vec<Value>,
    index: BTreeMap<String, usize>,
}

impl Rules {
    /// A rule per invariant, then per invariant and probe that produced a result.
    fn of(report: &Report) -> Self {
        let mut rules = Self {
            descriptors: Vec::new(),
            index: BTreeMap::new(),
        };
        for r in &report.invariants {
            rules.push(r.id.id().to_string(), invariant_rule(r.id));
        }
        for r in &report.invariants {
            let parent = rules.index[r.id.id()];
            let probes: BTreeSet<&str> = [&r.violations, &r.inconclusive, &r.accepted, &r.notes]
                .into_iter()
                .flatten()
                .map(|o| o.probe.as_str())
                .collect();
            for probe in probes {
                let id = probe_rule_id(r.id, probe);
                rules.push(id.clone(), probe_rule(&id, r.id, probe, parent));
            }
        }
        rules
    }

    fn push(&mut self, id: String, descriptor: Value) {
        self.index.insert(id, self.descriptors.len());
        self.descriptors.push(descriptor);
    }
}

/// `tenant-isolation/READ`.
fn probe_rule_id(invariant: InvariantId, probe: &str) -> String {
    format!("{}/{probe}", invariant.id())
}

/// The rule of an invariant.
fn invariant_rule(id: InvariantId) -> Value {
    json!({
        "id": id.id(),
        "name": id.id(),
        "shortDescription": { "text": title(id) },
        "fullDescription": { "text": id.statement() },
        "help": {
            "text": format!(
                "{}.\n\nrlsgate checks this as the runtime role over real logins (docs/system.md \
                 section 6, docs/campaigns.md): a violation is proven by the statement shown; an \
                 inconclusive check could not decide and is never a pass.",
                id.statement()
            ),
        },
        "defaultConfiguration": { "level": "error" },
        "properties": { "tags": ["security", "row-level-security", "multi-tenancy"] },
    })
}

/// The rule of `probe`'s checks of `invariant`, a part of the invariant's rule at `parent`.
fn probe_rule(id: &str, invariant: InvariantId, probe: &str, parent: usize) -> Value {
    json!({
        "id": id,
        "name": id,
        "shortDescription": { "text": format!("{}, checked by {probe}", title(invariant)) },
        "fullDescription": { "text": invariant.statement() },
        "help": { "text": format!("{}.\n\nChecked by {probe}.", invariant.statement()) },
        "defaultConfiguration": { "level": "error" },
        "relationships": [{
            "target": { "id": invariant.id(), "index": parent },
            "kinds": ["subset"],
        }],
        "properties": { "tags": ["security", "row-level-security", "multi-tenancy"] },
    })
}

/// What an invariant guards, in a few words.
fn title(id: InvariantId) -> &'static str {
    match id {
        InvariantId::TenantIsolation => "A tenant sees only its own rows",
        InvariantId::WriteCheck => "A tenant cannot write other tenants' rows",
        InvariantId::NoContextClosed => "No tenant context, no rows",
        InvariantId::ContextHygiene => "Pooled connections carry no tenant context",
        InvariantId::RuntimeIdentity => "The runtime connects as the runtime role",
        InvariantId::LeastPrivilege => "The runtime holds exactly the declared privileges",
        InvariantId::RuntimeLacksDdl => "The runtime cannot change the schema or escalate",
        InvariantId::RlsCoverage => "Every tenant table is covered by binding policies",
        InvariantId::DlqCompleteness => "Every failure is recorded once in the dead-letter queue",
        InvariantId::ExactlyOnce => "A request is recorded at most once",
        InvariantId::Atomicity => "A failed task leaves nothing behind",
        InvariantId::RollupConsistency => "Rollups equal their audit rows",
        InvariantId::ExpectedOutcome => "Every task ends as the model expects",
        InvariantId::Durability => "What committed survives crashes and faults",
        InvariantId::SideChannels => "No error reveals another tenant's data",
    }
}

/// The result of one observation.
fn result(
    o: &Observation,
    rules: &Rules,
    discovery: Option<&Discovery>,
    origins: Option<&Origins>,
) -> Value {
    let id = probe_rule_id(o.invariant, &o.probe);
    let level = match o.status {
        Status::Inconclusive => "warning",
        Status::Note => "note",
        Status::Violated | Status::Holds => "error",
    };
    let mut text = redact(&o.to_string());
    if let Some(s) = &o.statement {
        text.push_str(&format!("\nstatement:\n{}", redact(s.trim())));
    }
    if let Some(why) = o.undecided {
        text.push_str(&format!(
            "\nundecided: {}",
            serde_json::to_value(why)
                .unwrap_or_default()
                .as_str()
                .unwrap_or_default()
        ));
    }
    let class = if o.status == Status::Violated {
        "finding"
    } else {
        o.status.as_str()
    };
    let object = o.relation.as_deref().unwrap_or("");
    let mut result = json!({
        "ruleId": id,
        "ruleIndex": rules.index[&id],
        "level": level,
        "message": { "text": text },
        "partialFingerprints": {
            FINGERPRINT: fingerprint(&[&id, object, class, &masked(&o.detail)]),
        },
    });
    if let Some(relation) = &o.relation {
        result["locations"] = json!([location(o, relation, discovery, origins)]);
    }
    if let Some(reason) = &o.accepted {
        result["suppressions"] = json!([{
            "kind": "external",
            "status": "accepted",
            "justification": format!("accepted in rlsgate.toml ([[accept]]): {reason}"),
        }]);
    }
    result
}

/// Where a finding about `object` is: the migration statement behind it, when known, and the
/// object itself.
fn location(
    o: &Observation,
    object: &str,
    discovery: Option<&Discovery>,
    origins: Option<&Origins>,
) -> Value {
    let function = object.contains('(');
    let kind = if function {
        "function".to_string()
    } else {
        discovery
            .and_then(|d| d.relations.iter().find(|r| r.name == object))
            .map_or("object".into(), |r| r.kind.clone())
    };
    let mut location = json!({
        "logicalLocations": [{
            "name": object.rsplit_once('.').map_or(object, |(_, n)| n),
            "fullyQualifiedName": object,
            "kind": kind,
        }],
    });
    if let Some((origins, origin)) = origins.and_then(|all| Some((all, origin_of(o, object, all)?)))
    {
        let base = if origins.root.is_some() {
            "%SRCROOT%"
        } else {
            "PROJECTROOT"
        };
        location["physicalLocation"] = json!({
            "artifactLocation": { "uri": origins.repository_path(&origin.file), "uriBaseId": base },
            "region": { "startLine": origin.line },
        });
    }
    location
}

/// The statement a finding about `object` points at: the policy or grant it is about when
/// there is one, else where row-level security was switched on, else where the object was
/// created.
fn origin_of<'a>(o: &Observation, object: &str, origins: &'a Origins) -> Option<&'a Origin> {
    let function = object.split_once('(').map(|(name, _)| name);
    let keys: Vec<String> = match function {
        Some(f) => vec![format!("grant function {f}"), format!("function {f}")]
            .into_iter()
            .skip(usize::from(!about_privileges(o)))
            .collect(),
        // A schema (`public`, `schema public`): what was granted on it.
        None if !object.contains('.') => {
            let schema = object.strip_prefix("schema ").unwrap_or(object);
            vec![format!("grant schema {schema}")]
        }
        None => keys_for(o, object, origins),
    };
    keys.iter().find_map(|k| origins.get(k))
}

/// The keys to try for a finding about the relation `object`, most specific first.
fn keys_for(o: &Observation, object: &str, origins: &Origins) -> Vec<String> {
    let mut keys = Vec::new();
    if about_privileges(o) {
        keys.push(format!("grant {object}"));
        if let Some((schema, _)) = object.rsplit_once('.') {
            keys.push(format!("grant all-tables {schema}"));
        }
    } else if about_keys(o) {
        // A key is declared where the table is: the CREATE below.
    } else if o.probe.starts_with("catalog:view") {
        keys.push(format!("altered {object}"));
    } else if o.probe.starts_with("catalog:relrowsecurity")
        || o.probe.starts_with("catalog:relforcerowsecurity")
    {
        keys.push(format!("rls {object}"));
    } else if about_rows(o) {
        // The policy the finding names, else the last change of the relation's row security.
        let prefix = format!("policy {object} ");
        keys.extend(
            origins
                .objects
                .keys()
                .filter(|k| {
                    k.strip_prefix(&prefix)
                        .is_some_and(|name| names(&o.detail, name))
                })
                .cloned(),
        );
        keys.push(format!("rows {object}"));
    }
    keys.push(format!("relation {object}"));
    keys
}

/// True for findings about what the runtime may do (grants); a read past row security
/// (`BYPASS`) is about rows.
fn about_privileges(o: &Observation) -> bool {
    let bypass = o.probe.starts_with("BYPASS");
    matches!(
        o.invariant,
        InvariantId::LeastPrivilege | InvariantId::RuntimeLacksDdl
    ) && !bypass
        || o.probe.starts_with("catalog:dlq")
        || o.probe.starts_with("catalog:has_")
        || o.probe.starts_with("catalog:column_privileges")
}

/// True for findings about a table's keys (a unique key shared by every tenant, a foreign key
/// that does not carry the tenant): fixed where the table declares them, not in its policies.
fn about_keys(o: &Observation) -> bool {
    o.invariant == InvariantId::SideChannels || o.probe.starts_with("XREF")
}

/// True for findings about which rows a tenant reaches (policies).
fn about_rows(o: &Observation) -> bool {
    matches!(
        o.invariant,
        InvariantId::TenantIsolation | InvariantId::WriteCheck | InvariantId::NoContextClosed
    ) || o.probe.starts_with("BYPASS")
        || o.probe.starts_with("catalog:policy")
        || o.probe.starts_with("catalog:pg_policy")
}

/// True when `text` names `name` (an identifier as `%I` writes it) as a whole word.
fn names(text: &str, name: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    text.match_indices(name).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + name.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

/// `detail` redacted, with every number masked: what stays the same from run to run.
fn masked(detail: &str) -> String {
    static NUMBER: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\b\d+\b").expect("a valid regex"));
    NUMBER.replace_all(&redact(detail), "N").into_owned()
}

/// Hex SHA-256 of `parts`, each ended by a NUL.
fn fingerprint(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for p in parts {
        hash.update(p.as_bytes());
        hash.update([0]);
    }
    hex::encode(hash.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::discovery::Discovery;
    use crate::invariants::{Acceptance, Ledger, Undecided};
    use crate::migrations::origin::Origin;

    mod sarif_schema {
        include!("../../tests/it/sarif_schema.rs");
    }
    use sarif_schema::schema_errors;

    /// A project's report with a violation (at a policy the migrations created), an
    /// inconclusive check, an accepted violation (at a grant) and a note (on a function).
    fn report() -> Report {
        let accept = Acceptance {
            invariant: InvariantId::LeastPrivilege,
            relation: Some("public.audit".into()),
            probe: None,
            reason: "the auditors' export reads it".into(),
        };
        let mut ledger = Ledger::scoped([
            InvariantId::TenantIsolation,
            InvariantId::LeastPrivilege,
            InvariantId::RlsCoverage,
            InvariantId::ContextHygiene,
        ])
        .accepting([accept]);
        ledger.record_all([
            Observation::violated(
                InvariantId::RlsCoverage,
                "catalog:policy-using",
                "projects_read_all: USING is trivially true: `true`",
            )
            .on("public.projects"),
            Observation::violated(InvariantId::TenantIsolation, "READ", "2 foreign rows of 3")
                .on("public.projects")
                .with_statement("SELECT *\n  FROM public.projects"),
            Observation::inconclusive(
                InvariantId::ContextHygiene,
                Undecided::Interrupted,
                "POOL",
                "the connection to 127.0.0.1:54321 was lost",
            ),
            Observation::violated(
                InvariantId::LeastPrivilege,
                "catalog:has_table_privilege",
                "the runtime holds SELECT, not declared",
            )
            .on("public.audit"),
            Observation::note(
                InvariantId::RlsCoverage,
                "catalog:security-definer",
                "public.report(uuid) is SECURITY DEFINER",
            )
            .on("public.report(uuid)"),
        ]);
        let mut report =
            Report::interrupted("project", "rlsgate check --config rlsgate.toml".into());
        (report.verdict, report.invariants) = Report::results(&ledger);
        let at = |file: &str, line| Origin {
            file: file.into(),
            line,
        };
        let mut discovery = Discovery::default();
        discovery.origins.root = Some("db".into());
        for (key, origin) in [
            (
                "relation public.projects",
                at("migrations/0001_schema.sql", 3),
            ),
            (
                "policy public.projects tenant_isolation",
                at("migrations/0002_rls.sql", 5),
            ),
            (
                "policy public.projects projects_read_all",
                at("../break/0100_break.sql", 9),
            ),
            ("rows public.projects", at("../break/0100_break.sql", 9)),
            ("grant public.audit", at("migrations/0003_grants.sql", 2)),
            (
                "function public.report",
                at("migrations/0001_schema.sql", 20),
            ),
        ] {
            discovery.origins.objects.insert(key.into(), origin);
        }
        report.project = Some(discovery);
        report
    }

    fn results(sarif: &Value) -> &Vec<Value> {
        sarif["runs"][0]["results"].as_array().unwrap()
    }

    fn by_rule<'a>(sarif: &'a Value, rule: &str) -> &'a Value {
        results(sarif)
            .iter()
            .find(|r| r["ruleId"] == rule)
            .unwrap_or_else(|| panic!("a result of {rule}"))
    }

    #[test]
    fn a_report_renders_valid_sarif_with_levels_suppressions_and_locations() {
        let text = render(&report());
        assert_eq!(schema_errors(&text), Vec::<String>::new(), "{text}");
        let sarif: Value = serde_json::from_str(&text).unwrap();
        let rules: Vec<&str> = sarif["runs"][0]["tool"]["driver"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            rules,
            [
                "tenant-isolation",
                "context-hygiene",
                "least-privilege",
                "rls-coverage",
                "tenant-isolation/READ",
                "context-hygiene/POOL",
                "least-privilege/catalog:has_table_privilege",
                "rls-coverage/catalog:policy-using",
                "rls-coverage/catalog:security-definer",
            ]
        );
        // A violation is an error at the policy it names, in the repository's terms.
        let policy = by_rule(&sarif, "rls-coverage/catalog:policy-using");
        assert_eq!(policy["level"], "error");
        let physical = &policy["locations"][0]["physicalLocation"];
        assert_eq!(physical["artifactLocation"]["uri"], "break/0100_break.sql");
        assert_eq!(physical["artifactLocation"]["uriBaseId"], "%SRCROOT%");
        assert_eq!(physical["region"]["startLine"], 9);
        let logical = &policy["locations"][0]["logicalLocations"][0];
        assert_eq!(logical["fullyQualifiedName"], "public.projects");
        // A read that names no policy points at the last policy on the relation.
        let read = by_rule(&sarif, "tenant-isolation/READ");
        assert_eq!(
            read["locations"][0]["physicalLocation"]["region"]["startLine"],
            9
        );
        assert!(
            read["message"]["text"]
                .as_str()
                .unwrap()
                .contains("statement:\nSELECT *\n  FROM public.projects")
        );
        // Inconclusive: a warning with no object, redacted.
        let pool = by_rule(&sarif, "context-hygiene/POOL");
        assert_eq!(pool["level"], "warning");
        assert!(pool.get("locations").is_none());
        assert!(!pool["message"]["text"].as_str().unwrap().contains("54321"));
        assert!(
            pool["message"]["text"]
                .as_str()
                .unwrap()
                .contains("undecided: interrupted")
        );
        // Accepted: suppressed with its reason, at the grant.
        let accepted = by_rule(&sarif, "least-privilege/catalog:has_table_privilege");
        assert_eq!(accepted["suppressions"][0]["status"], "accepted");
        assert!(
            accepted["suppressions"][0]["justification"]
                .as_str()
                .unwrap()
                .contains("the auditors' export reads it")
        );
        assert_eq!(
            accepted["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "db/migrations/0003_grants.sql"
        );
        // A note on a function: at the function, a function as its logical location.
        let note = by_rule(&sarif, "rls-coverage/catalog:security-definer");
        assert_eq!(note["level"], "note");
        assert_eq!(
            note["locations"][0]["logicalLocations"][0]["kind"],
            "function"
        );
        assert_eq!(
            note["locations"][0]["physicalLocation"]["region"]["startLine"],
            20
        );
        assert_eq!(sarif["runs"][0]["properties"]["verdict"], "fail");
    }

    #[test]
    fn a_finding_about_a_key_points_at_the_table_not_its_policies() {
        let origins = Origins::default();
        for o in [
            Observation::violated(
                InvariantId::WriteCheck,
                "XREF:notes_contact_fkey",
                "went in",
            )
            .on("public.notes"),
            Observation::violated(InvariantId::SideChannels, "UNIQUE", "collided")
                .on("public.notes"),
        ] {
            assert_eq!(
                keys_for(&o, "public.notes", &origins),
                ["relation public.notes"],
                "{}",
                o.probe
            );
        }
        let read = Observation::violated(InvariantId::TenantIsolation, "READ", "saw B's row")
            .on("public.notes");
        assert_eq!(
            keys_for(&read, "public.notes", &origins),
            ["rows public.notes", "relation public.notes"]
        );
    }

    #[test]
    fn fingerprints_ignore_numbers_ports_and_uuids_but_not_the_object() {
        let o = |detail: &str, relation: &str| {
            let rules = Rules {
                descriptors: Vec::new(),
                index: [("tenant-isolation/READ".to_string(), 0)].into(),
            };
            let o =
                Observation::violated(InvariantId::TenantIsolation, "READ", detail).on(relation);
            result(&o, &rules, None, None)["partialFingerprints"][FINGERPRINT].clone()
        };
        let a = o(
            "2 rows of tenant 9e84f421-176d-5f16-b9ab-0c6833a74561",
            "public.t",
        );
        assert_eq!(
            a,
            o(
                "7 rows of tenant 063b4e04-cea7-5d10-a3bf-5add8f5572cc",
                "public.t"
            )
        );
        assert_ne!(
            a,
            o(
                "2 rows of tenant 9e84f421-176d-5f16-b9ab-0c6833a74561",
                "public.u"
            )
        );
        assert_ne!(a, o("2 rows written", "public.t"));
    }

    #[test]
    fn an_interrupted_run_is_an_unsuccessful_invocation_and_valid_sarif() {
        let text = render(&Report::interrupted("run", "rlsgate run --seed 1".into()));
        assert_eq!(schema_errors(&text), Vec::<String>::new(), "{text}");
        let sarif: Value = serde_json::from_str(&text).unwrap();
        let invocation = &sarif["runs"][0]["invocations"][0];
        assert_eq!(invocation["executionSuccessful"], false);
        assert_eq!(invocation["exitCode"], 130);
        assert!(results(&sarif).is_empty());
    }
}
