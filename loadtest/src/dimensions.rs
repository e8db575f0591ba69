//! The matrix's stack dimensions: what each is called in reports, on the command line and
//! in the `--reconfigure` command's environment, and the values clap accepts for each;
//! and `--skip`, which drops combinations. A leaf module.

use std::collections::BTreeMap;
use std::fmt;

use clap::ValueEnum;

/// The front tier's sold-out gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Gate {
    Off,
    On,
}

/// The request queue's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueueType {
    Classic,
    Quorum,
}

/// The store behind the backends and workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Store {
    Sqlite,
    Postgres,
    Mongodb,
}

/// A value's name as clap spells it (`on`, `quorum`, `postgres`).
pub fn value_name<T: ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map_or_else(String::new, |p| p.get_name().to_string())
}

/// A stack dimension: its name in reports (and `--skip`), its option, the variable the
/// `--reconfigure` command gets, and its prefix in row labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dimension {
    pub name: &'static str,
    pub option: &'static str,
    pub env: &'static str,
    pub label_prefix: &'static str,
}

/// Every stack dimension, in column (and nesting) order.
pub const DIMENSIONS: [Dimension; 5] = [
    Dimension {
        name: "batch",
        option: "--batch",
        env: "FLASHSALE_BATCH",
        label_prefix: "b",
    },
    Dimension {
        name: "gate",
        option: "--gate",
        env: "FLASHSALE_SOLD_OUT_GATE",
        label_prefix: "g",
    },
    Dimension {
        name: "workers",
        option: "--workers",
        env: "FLASHSALE_WORKERS",
        label_prefix: "w",
    },
    Dimension {
        name: "queue_type",
        option: "--queue-type",
        env: "FLASHSALE_QUEUE_TYPE",
        label_prefix: "",
    },
    Dimension {
        name: "store",
        option: "--store",
        env: "FLASHSALE_STORE",
        label_prefix: "",
    },
];

/// Keys `--skip` accepts besides the stack dimensions.
const ROW_KEYS: [&str; 3] = ["strategy", "route", "c"];

/// `--skip strategy=count-insert,gate=on`: drop every row matching all the pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pairs: Vec<(String, String)>,
}

/// For clap: `--skip KEY=V[,KEY=V...]`.
pub fn parse_skip(s: &str) -> Result<Skip, String> {
    let known = || {
        ROW_KEYS
            .iter()
            .copied()
            .chain(DIMENSIONS.iter().map(|d| d.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut pairs = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            return Err(format!(
                "bad skip `{s}`: `{part}` is not KEY=VALUE (e.g. strategy=count-insert,gate=on)"
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        let key = if key == "concurrency" { "c" } else { key };
        if !ROW_KEYS.contains(&key) && !DIMENSIONS.iter().any(|d| d.name == key) {
            return Err(format!(
                "bad skip `{s}`: unknown key `{key}`; known: {}",
                known()
            ));
        }
        if value.is_empty() {
            return Err(format!("bad skip `{s}`: `{key}` has no value"));
        }
        pairs.push((key.to_string(), value.to_string()));
    }
    if pairs.is_empty() {
        return Err("bad skip ``: give KEY=VALUE pairs, e.g. strategy=count-insert,gate=on".into());
    }
    Ok(Skip { pairs })
}

impl Skip {
    /// Whether a row with these fields (`strategy`, `route`, `c` and its stack
    /// dimensions) matches every pair.
    pub fn matches(&self, row: &BTreeMap<String, String>) -> bool {
        self.pairs
            .iter()
            .all(|(k, v)| row.get(k).is_some_and(|x| x == v))
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pairs: Vec<String> = self.pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        write!(f, "{}", pairs.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_skip_matches_rows_with_every_pair() {
        let skip = parse_skip("strategy=count-insert, gate=on").unwrap();
        assert!(skip.matches(&row(&[
            ("strategy", "count-insert"),
            ("gate", "on"),
            ("c", "1")
        ])));
        assert!(!skip.matches(&row(&[("strategy", "count-insert"), ("gate", "off")])));
        assert!(!skip.matches(&row(&[("strategy", "count-insert")])));
        assert_eq!(skip.to_string(), "strategy=count-insert,gate=on");
        assert!(
            parse_skip("concurrency=100")
                .unwrap()
                .matches(&row(&[("c", "100")]))
        );
    }

    #[test]
    fn a_bad_skip_says_what_is_wrong() {
        for (bad, says) in [
            ("colour=red", "unknown key `colour`"),
            ("gate", "not KEY=VALUE"),
            ("gate=", "has no value"),
            ("", "give KEY=VALUE"),
        ] {
            let err = parse_skip(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn values_are_named_as_on_the_command_line() {
        assert_eq!(value_name(&Gate::On), "on");
        assert_eq!(value_name(&QueueType::Quorum), "quorum");
        assert_eq!(value_name(&Store::Postgres), "postgres");
    }
}
