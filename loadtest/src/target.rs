//! The URL under test: parsed once, then turned into request paths cheaply in the hot loop.
//!
//! Invariants: only plain `http://` (the hot loop speaks HTTP/1 over TCP, no TLS); the
//! origin (`scheme://host:port`) is where the control endpoints (`/sale`, `/admin/sale`)
//! live; when user ids are on, every request carries `user=<id>` appended to the query.

use std::fmt::Write as _;
use std::net::SocketAddr;

use hyper::Uri;

use crate::error::LoadtestError;

/// A parsed target URL.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// `http://host:port`, for the control calls.
    pub origin: String,
    /// `host:port`, for the `Host` header and for name resolution.
    pub authority: String,
    /// Path and query up to where the user id goes (`/http/buy?user=`), or the whole
    /// path and query when user ids are off.
    prefix: String,
    with_user_ids: bool,
    /// The request target when it never changes (no user ids): parsed once, cloned cheaply.
    fixed: Uri,
}

impl Target {
    /// Parses a full `http://` URL. `user_ids` says whether requests carry `?user=<id>`;
    /// a URL that already names a user keeps it and gets no ids appended.
    pub fn parse(url: &str, user_ids: bool) -> Result<Self, LoadtestError> {
        let bad = |reason: &str| LoadtestError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad("https is not supported (the hot loop is plain HTTP/1)"));
            }
            Some(other) => return Err(bad(&format!("unsupported scheme `{other}`"))),
            None => return Err(bad("missing scheme `http://`")),
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("missing host"))?;
        let port = uri.port_u16().unwrap_or(80);
        let authority = format!("{host}:{port}");
        let origin = format!("http://{authority}");
        let path = match uri.path() {
            "" => "/",
            p => p,
        };
        let query = uri.query().filter(|q| !q.is_empty());
        let names_a_user = query.is_some_and(|q| q.split('&').any(|kv| kv.starts_with("user=")));
        let with_user_ids = user_ids && !names_a_user;
        let mut prefix = path.to_string();
        match (query, with_user_ids) {
            (Some(q), true) => write!(prefix, "?{q}&user=").unwrap(),
            (None, true) => prefix.push_str("?user="),
            (Some(q), false) => write!(prefix, "?{q}").unwrap(),
            (None, false) => {}
        }
        let fixed = Uri::try_from(prefix.as_str()).map_err(|e| bad(&e.to_string()))?;
        Ok(Self {
            url: url.to_string(),
            origin,
            authority,
            prefix,
            with_user_ids,
            fixed,
        })
    }

    /// Whether each request carries a distinct user id.
    pub fn with_user_ids(&self) -> bool {
        self.with_user_ids
    }

    /// The request target up to where the user id goes (the whole request target when
    /// requests carry no user id).
    pub fn request_prefix(&self) -> &str {
        &self.prefix
    }

    /// The request target (origin-form) for one request.
    pub fn request_uri(&self, user: u64) -> Uri {
        if !self.with_user_ids {
            return self.fixed.clone();
        }
        let mut s = String::with_capacity(self.prefix.len() + 20);
        s.push_str(&self.prefix);
        write!(s, "{user}").unwrap();
        // The prefix came out of a valid URI and digits keep it valid.
        Uri::try_from(s).expect("request path built from a parsed URI is valid")
    }

    /// A short name of the route the URL buys through: `http`, `mq`, `default` (`/buy`),
    /// or the path itself for anything else.
    pub fn route_name(&self) -> String {
        let path = self.prefix.split('?').next().unwrap_or("/");
        match path.trim_end_matches('/') {
            "/http/buy" => "http".into(),
            "/mq/buy" => "mq".into(),
            "/buy" => "default".into(),
            "" => "/".into(),
            other => other.to_string(),
        }
    }

    /// Resolves the host once, so the hot loop connects to an address without DNS.
    pub async fn resolve(&self) -> Result<SocketAddr, LoadtestError> {
        let unreachable = |reason: String| LoadtestError::Unreachable {
            target: self.origin.clone(),
            reason,
        };
        let mut addrs = tokio::net::lookup_host(self.authority.as_str())
            .await
            .map_err(|e| unreachable(format!("cannot resolve host: {e}")))?;
        addrs
            .next()
            .ok_or_else(|| unreachable("host resolves to no address".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buy_url_gets_a_user_id_appended() {
        let t = Target::parse("http://127.0.0.1:5000/http/buy", true).unwrap();
        assert_eq!(t.request_uri(42).to_string(), "/http/buy?user=42");
        assert_eq!(t.origin, "http://127.0.0.1:5000");
        assert_eq!(t.route_name(), "http");
    }

    #[test]
    fn an_existing_query_is_kept_and_extended() {
        let t = Target::parse("http://localhost/mq/buy?x=1", true).unwrap();
        assert_eq!(t.request_uri(7).to_string(), "/mq/buy?x=1&user=7");
        assert_eq!(t.authority, "localhost:80");
        assert_eq!(t.route_name(), "mq");
    }

    #[test]
    fn a_url_naming_a_user_gets_no_second_one() {
        let t = Target::parse("http://h:1/buy?user=5", true).unwrap();
        assert!(!t.with_user_ids());
        assert_eq!(t.request_uri(9).to_string(), "/buy?user=5");
        assert_eq!(t.route_name(), "default");
    }

    #[test]
    fn user_ids_can_be_turned_off() {
        let t = Target::parse("http://h:1/healthz", false).unwrap();
        assert_eq!(t.request_uri(9).to_string(), "/healthz");
    }

    #[test]
    fn bad_urls_are_rejected_with_a_reason() {
        for url in [
            "127.0.0.1:5000/buy",
            "https://h/buy",
            "ftp://h/x",
            "http://",
            "not a url",
        ] {
            let err = Target::parse(url, true).unwrap_err();
            assert!(matches!(err, LoadtestError::BadUrl { .. }), "{url}: {err}");
        }
    }
}
