//! Markers on a run's timeline: what happened when (`--mark "12s: node 2 killed"`), and
//! markers a script appends to a file while the run goes on (`--marks-file`).
//!
//! A `--mark` gives its offset from the run's start. A marks file holds one marker per line
//! as `<unix epoch seconds, fractional allowed> <text>`; it is read when the run ends, and
//! each line becomes an offset from the run's start (the moment the clock started, after
//! connecting, warming up and resetting the sale). Lines from before the start or after the
//! end belong to another run and are skipped (with a warning); blank lines and lines
//! starting with `#` are ignored.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::duration::parse_duration;
use crate::error::LoadtestError;

/// One marker, `t_s` seconds after the run's start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    pub t_s: f64,
    pub text: String,
}

/// Parses `--mark "12s: node 2 killed"` (any duration `parse_duration` takes, then `:`).
pub fn parse_mark(s: &str) -> Result<Mark, String> {
    let Some((at, text)) = s.split_once(':') else {
        return Err(format!(
            "bad mark `{s}`: write OFFSET: TEXT, e.g. \"12s: node 2 killed\""
        ));
    };
    let at = parse_duration(at).map_err(|e| format!("bad mark `{s}`: {e}"))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("bad mark `{s}`: the text after `:` is empty"));
    }
    Ok(Mark {
        t_s: at.as_secs_f64(),
        text: text.to_string(),
    })
}

/// Reads a marks file written during a run that started at `started_at` and lasted
/// `elapsed`. Returns the markers inside the run and how many lines were outside it.
pub fn read_marks_file(
    path: &Path,
    started_at: SystemTime,
    elapsed: Duration,
) -> Result<(Vec<Mark>, usize), LoadtestError> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadtestError::Marks {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let start = started_at
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut marks = Vec::new();
    let mut outside = 0;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (epoch, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let epoch: f64 = epoch.parse().map_err(|_| LoadtestError::Marks {
            path: path.to_path_buf(),
            reason: format!(
                "line {}: `{epoch}` is not unix epoch seconds (write `<epoch seconds> <text>`, e.g. `date +%s.%N`)",
                n + 1
            ),
        })?;
        let t_s = epoch - start;
        if !(0.0..=elapsed.as_secs_f64()).contains(&t_s) {
            outside += 1;
            continue;
        }
        marks.push(Mark {
            t_s: (t_s * 1000.0).round() / 1000.0,
            text: rest.trim().to_string(),
        });
    }
    Ok((marks, outside))
}

/// The run's markers: the given ones and those of the marks file, in time order.
pub fn collect_marks(
    given: &[Mark],
    file: Option<&Path>,
    started_at: SystemTime,
    elapsed: Duration,
) -> Vec<Mark> {
    let mut marks = given.to_vec();
    if let Some(path) = file {
        match read_marks_file(path, started_at, elapsed) {
            Ok((from_file, outside)) => {
                if outside > 0 {
                    eprintln!(
                        "loadtest: {outside} marker(s) in {} lie outside this run and were skipped",
                        path.display()
                    );
                }
                marks.extend(from_file);
            }
            Err(e) => eprintln!("loadtest: warning: {e}"),
        }
    }
    marks.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    marks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_is_an_offset_and_a_text() {
        let m = parse_mark("12s: node 2 killed").unwrap();
        assert_eq!((m.t_s, m.text.as_str()), (12.0, "node 2 killed"));
        assert_eq!(parse_mark("1500ms:x").unwrap().t_s, 1.5);
        assert!(parse_mark("soon: x").is_err());
        assert!(parse_mark("12s").is_err());
        assert!(parse_mark("12s:  ").is_err());
    }

    #[test]
    fn a_marks_file_becomes_offsets_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("marks");
        let start = UNIX_EPOCH + Duration::from_secs(1_000);
        std::fs::write(
            &path,
            "# written by a script\n999.5 before the run\n1002.25 node 2 killed\n\n1004 back\n1100 after\n",
        )
        .unwrap();

        let (marks, outside) = read_marks_file(&path, start, Duration::from_secs(10)).unwrap();

        assert_eq!(
            marks,
            vec![
                Mark {
                    t_s: 2.25,
                    text: "node 2 killed".into()
                },
                Mark {
                    t_s: 4.0,
                    text: "back".into()
                }
            ]
        );
        assert_eq!(outside, 2);
        std::fs::write(&path, "yesterday node 2 killed\n").unwrap();
        assert!(read_marks_file(&path, start, Duration::from_secs(10)).is_err());
    }
}
