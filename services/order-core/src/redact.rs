//! Secrets kept out of logs: URLs (AMQP, MongoDB, PostgreSQL) lose their password before they
//! are shown.

/// `scheme://user:password@host/...` with the password replaced by `***`, for logs; so is
/// the value of a `password=` query parameter (PostgreSQL URLs may carry one there).
/// Anything without a password comes back unchanged.
pub fn redact_url(url: &str) -> String {
    let url = redact_userinfo(url);
    let Some(query_start) = url.find('?') else {
        return url;
    };
    let (head, query) = url.split_at(query_start + 1);
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{head}{}", query.join("&"))
}

fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:***{}",
        &url[..scheme_end + 3],
        &userinfo[..colon],
        &url[scheme_end + 3 + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_only_the_password() {
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("mongodb://u:p@w@mongo:27017/db?x=1"),
            "mongodb://u:***@mongo:27017/db?x=1"
        );
        assert_eq!(redact_url("amqp://127.0.0.1:5672"), "amqp://127.0.0.1:5672");
        assert_eq!(redact_url("amqp://user@host/"), "amqp://user@host/");
        assert_eq!(redact_url("flashsale.db"), "flashsale.db");
        assert_eq!(
            redact_url("postgres://app:pw@db:5432/x?sslmode=disable&password=pw2"),
            "postgres://app:***@db:5432/x?sslmode=disable&password=***"
        );
    }
}
