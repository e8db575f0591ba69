//! Report files on disk: checking the output directory before any load, writing one file,
//! and reading a report back. Which files a report makes (JSON, Markdown, plots, HTML) is
//! decided by [`crate::output`].

use std::fs;
use std::path::{Path, PathBuf};

use super::Report;
use crate::error::LoadtestError;

/// Makes sure `dir` exists and is writable before any load is sent.
pub fn ensure_writable(dir: &Path) -> Result<(), LoadtestError> {
    let fail = |cause| LoadtestError::OutputDir {
        path: dir.to_path_buf(),
        cause,
    };
    fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(format!(".loadtest-probe-{}", std::process::id()));
    fs::write(&probe, b"").map_err(fail)?;
    let _ = fs::remove_file(probe);
    Ok(())
}

/// Writes one file into `dir`, mapping failures to the output-directory error.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> Result<PathBuf, LoadtestError> {
    let fail = |cause| LoadtestError::OutputDir {
        path: dir.to_path_buf(),
        cause,
    };
    fs::create_dir_all(dir).map_err(fail)?;
    let path = dir.join(name);
    fs::write(&path, contents).map_err(fail)?;
    Ok(path)
}

/// Pretty JSON of a report (or any report-like value).
pub fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("a report always serializes")
}

impl Report {
    /// Reads a report written by `loadtest run` or `merge`.
    pub fn load(path: &Path) -> Result<Self, LoadtestError> {
        let text = fs::read_to_string(path).map_err(|e| LoadtestError::ReadReport {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| LoadtestError::ReadReport {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }
}
