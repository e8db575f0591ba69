//! What a `--store` value names. The one place that decides which store a value selects:
//!
//! - `postgres://...` or `postgresql://...`: PostgreSQL;
//! - `mongodb://...` or `mongodb+srv://...`: MongoDB;
//! - `sqlite://PATH` or a plain path: the embedded SQLite file at PATH.
//!
//! Any other `scheme://` is refused rather than taken for a file name, so that a mistyped
//! URL is an error at start-up, not a new SQLite file named after it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::redact::redact_url;

/// A store, as named by `--store`.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreSpec {
    Sqlite(PathBuf),
    Postgres(String),
    Mongo(String),
}

/// Why a `--store` value names no store. Its text never holds a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadStoreSpec(String);

impl FromStr for StoreSpec {
    type Err = BadStoreSpec;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(BadStoreSpec(
                "the store is empty: give a file path, sqlite://PATH, postgres://... or mongodb://..."
                    .into(),
            ));
        }
        let Some((scheme, rest)) = spec.split_once("://") else {
            return Ok(Self::Sqlite(PathBuf::from(spec)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Ok(Self::Postgres(spec.to_owned())),
            "mongodb" | "mongodb+srv" => Ok(Self::Mongo(spec.to_owned())),
            "sqlite" if rest.is_empty() => Err(BadStoreSpec(
                "sqlite:// needs a path, e.g. sqlite://flashsale.db or sqlite:///var/lib/flashsale.db"
                    .into(),
            )),
            "sqlite" => Ok(Self::Sqlite(PathBuf::from(rest))),
            other => Err(BadStoreSpec(format!(
                "unknown store scheme {other:?} in {}: expected postgres://, postgresql://, \
                 mongodb://, mongodb+srv://, sqlite:// or a file path",
                redact_url(spec)
            ))),
        }
    }
}

impl StoreSpec {
    /// The kind of store, for logs and reports: `sqlite`, `postgres` or `mongodb`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
            Self::Mongo(_) => "mongodb",
        }
    }
}

// Shown with any password masked: specs reach logs and error messages.
impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "{}", path.display()),
            Self::Postgres(url) | Self::Mongo(url) => f.write_str(&redact_url(url)),
        }
    }
}

impl fmt::Debug for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreSpec({}: {self})", self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> Result<StoreSpec, BadStoreSpec> {
        spec.parse()
    }

    #[test]
    fn each_scheme_selects_its_store_and_a_plain_path_is_sqlite() {
        assert_eq!(
            parse("flashsale.db").unwrap(),
            StoreSpec::Sqlite("flashsale.db".into())
        );
        assert_eq!(
            parse("/var/lib/x.db").unwrap(),
            StoreSpec::Sqlite("/var/lib/x.db".into())
        );
        assert_eq!(
            parse("sqlite://rel/x.db").unwrap(),
            StoreSpec::Sqlite("rel/x.db".into())
        );
        assert_eq!(
            parse("sqlite:///abs/x.db").unwrap(),
            StoreSpec::Sqlite("/abs/x.db".into())
        );
        for url in [
            "postgres://u@h/db",
            "postgresql://u:p@h:5432/db",
            "POSTGRES://h",
        ] {
            assert_eq!(parse(url).unwrap().kind(), "postgres", "{url}");
        }
        for url in ["mongodb://h/db", "mongodb+srv://cluster/db"] {
            assert_eq!(parse(url).unwrap().kind(), "mongodb", "{url}");
        }
    }

    #[test]
    fn an_unknown_scheme_or_an_empty_value_is_refused_without_showing_a_password() {
        let error = parse("mysql://app:hunter2@db/x").unwrap_err().to_string();
        assert!(error.contains("unknown store scheme \"mysql\""), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        assert!(parse("").is_err());
        assert!(parse("  ").is_err());
        assert!(parse("sqlite://").is_err());
    }

    #[test]
    fn a_spec_is_displayed_with_its_password_masked() {
        let spec = parse("postgres://app:hunter2@db:5432/flashsale").unwrap();
        assert_eq!(spec.to_string(), "postgres://app:***@db:5432/flashsale");
        assert!(!format!("{spec:?}").contains("hunter2"));
    }
}
