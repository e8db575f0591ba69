//! Buyer by buyer: when each buyer first sent, how often, and the last answer it got.
//!
//! Every measured request carries its own user id, so a buyer is one request (sent again
//! only when the own engine found its kept-alive connection closed while idle). The
//! first-send instant is the generator's monotonic clock, in microseconds since the run's
//! clock started: it orders this machine's buyers among themselves, and says nothing about
//! when the server saw them, nor about the buyers of another load machine.
//!
//! `--buyers-out PATH` writes them as JSON Lines, one buyer a line, in send order:
//! `{"user":42,"first_send_us":1234,"sends":1,"outcome":"ordered","order_id":"...","status":200}`.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;

use serde::Serialize;

use crate::error::LoadtestError;
use crate::outcome::Outcome;

/// One buyer of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buyer {
    pub user: u64,
    /// Microseconds from the run's start to the buyer's first send.
    pub first_send_us: u64,
    /// Times the request was written (1, or 2 after a silently closed connection).
    pub sends: u32,
    /// The buyer's last answer.
    pub outcome: Outcome,
    /// HTTP status of that answer; `None` without one (timeout, connect or I/O error).
    pub status: Option<u16>,
    /// The order id that answer carried (kept only when a buyers file is written).
    pub order_id: Option<Box<str>>,
}

#[derive(Serialize)]
struct Line<'a> {
    user: u64,
    first_send_us: u64,
    sends: u32,
    outcome: &'static str,
    order_id: Option<&'a str>,
    status: Option<u16>,
}

/// Sorts buyers in send order (ties by user id).
pub fn sort_by_send(buyers: &mut [Buyer]) {
    buyers.sort_unstable_by_key(|b| (b.first_send_us, b.user));
}

/// Creates (truncates) the buyers file, so a path that cannot be written fails before any
/// load is sent.
pub fn create(path: &Path) -> Result<File, LoadtestError> {
    File::create(path).map_err(|cause| LoadtestError::BuyersOut {
        path: path.to_path_buf(),
        cause,
    })
}

/// Writes `buyers` as JSON Lines to `file` (created by [`create`] for `path`).
pub fn write(file: File, path: &Path, buyers: &[Buyer]) -> Result<(), LoadtestError> {
    let fail = |cause| LoadtestError::BuyersOut {
        path: path.to_path_buf(),
        cause,
    };
    let mut out = BufWriter::new(file);
    for b in buyers {
        let line = Line {
            user: b.user,
            first_send_us: b.first_send_us,
            sends: b.sends,
            outcome: b.outcome.name(),
            order_id: b.order_id.as_deref(),
            status: b.status,
        };
        serde_json::to_writer(&mut out, &line).map_err(|e| fail(e.into()))?;
        out.write_all(b"\n").map_err(fail)?;
    }
    out.flush().map_err(fail)
}
