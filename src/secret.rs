//! Keeping secrets out of what rlsgate prints and sends: URLs with their password masked, and
//! role passwords sent to the server as SCRAM-SHA-256 verifiers, never as plaintext.

/// `url` with the password (if any) replaced by `***`, for messages and `Debug`. A string that
/// is not a URL is masked whole when it may hold a password (`password=` key-value form).
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        if let Some((userinfo, host)) = authority.rsplit_once('@') {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            return format!("{scheme}://{masked}@{host}{}", redact_query(tail));
        }
        return format!("{scheme}://{authority}{}", redact_query(tail));
    }
    if url.contains("password") {
        "<redacted connection string>".into()
    } else {
        url.to_string()
    }
}

/// A URL's path and query with a `password=` parameter masked.
fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => p.to_string(),
        })
        .collect();
    format!("{path}?{}", params.join("&"))
}

/// The SCRAM-SHA-256 verifier of `password` (random salt), as `CREATE ROLE … PASSWORD` takes
/// it: the server stores it as is, and the plaintext never crosses the wire or reaches the
/// server's statement log.
pub(crate) fn scram_verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_and_keep_the_rest() {
        assert_eq!(
            redact_url("postgres://admin:s3cr%40t@db.local:5433/app?sslmode=disable"),
            "postgres://admin:***@db.local:5433/app?sslmode=disable"
        );
        assert_eq!(
            redact_url("postgresql://admin@db/app?password=hunter2&application_name=x"),
            "postgresql://admin@db/app?password=***&application_name=x"
        );
        assert_eq!(redact_url("postgres://db:5432"), "postgres://db:5432");
        assert_eq!(
            redact_url("host=db user=a password=hunter2"),
            "<redacted connection string>"
        );
        assert!(!redact_url("postgres://u:p:q@h/d").contains("p:q"));
    }

    #[test]
    fn verifiers_are_scram_and_never_the_password() {
        let v = scram_verifier("correct horse");
        assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{v}");
        assert!(!v.contains("correct horse"));
        assert_ne!(v, scram_verifier("correct horse"), "a fresh salt each time");
    }
}
