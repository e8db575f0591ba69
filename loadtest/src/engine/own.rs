//! The default engine (`--engine own`): a lean keep-alive HTTP/1.1 client on a tokio
//! `TcpStream`, written for the hot loop.
//!
//! Per request it renders the target's request into a reused buffer (only the user id
//! digits change), writes it, and reads the answer into a reused read buffer that
//! [`crate::http1::parse`] frames; a `Content-Length` body is classified where it lies, a
//! chunked one is decoded into a reused buffer. So a request costs one `write`, one or more
//! `read`s and no allocation, channel or task.
//!
//! Reconnects: after `Connection: close`, an HTTP/1.0 answer, a body delimited by the end
//! of the connection, a broken answer or a timeout, the next request opens a new
//! connection. A kept-alive connection the server has closed meanwhile (idle timeout, or a
//! server that closes after N answers without saying so) shows as a write error, or as the
//! end of the connection before any byte of the answer: then, and only then, the request
//! is sent once more on a new connection and counted once, as browsers and pooled clients
//! do. A buy is idempotent per user (a repeat answers `already_ordered`), so even a server
//! that read the request before closing cannot be made to take two orders by it.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::{Connection, Request, Shared};
use crate::http1::{self, Body, MAX_BODY, MAX_HEAD};
use crate::outcome::{Answer, Outcome, classify};

/// Read buffer of a fresh connection; it grows (rarely) up to a whole allowed answer.
const READ_BUFFER: usize = 16 * 1024;

/// How a round trip failed.
enum Failure {
    /// Nothing of the answer arrived (write failed, or the connection ended or broke
    /// first): on a connection that had served before, it was stale; send again.
    NothingReceived,
    /// Part of the answer arrived, or it was not HTTP: the request failed.
    Broken,
}

pub(crate) struct OwnConn {
    stream: Option<TcpStream>,
    /// Whether `stream` has carried a whole answer (so a failure before any byte of the
    /// next one means the server closed an idle connection).
    served: bool,
    /// The request being sent (capacity reused).
    request: Vec<u8>,
    /// Received bytes live in `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// A decoded chunked body (capacity reused).
    body: Vec<u8>,
    /// Requests written again on a fresh connection (see [`Connection::resends`]).
    resends: u64,
}

impl Connection for OwnConn {
    fn new(_shared: &Shared) -> Self {
        Self {
            stream: None,
            served: false,
            request: Vec::with_capacity(256),
            buf: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
            body: Vec::new(),
            resends: 0,
        }
    }

    async fn connect(&mut self, shared: &Shared) -> Result<(), ()> {
        self.close();
        let stream = TcpStream::connect(shared.addr).await.map_err(drop)?;
        // Small requests and answers: do not let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        self.stream = Some(stream);
        Ok(())
    }

    fn close(&mut self) {
        self.stream = None;
        self.served = false;
        self.start = 0;
        self.end = 0;
    }

    fn resends(&self) -> u64 {
        self.resends
    }

    async fn attempt(&mut self, shared: &Shared, request: Request) -> Answer {
        shared.render(request, &mut self.request);
        loop {
            if self.stream.is_none() && self.connect(shared).await.is_err() {
                return Answer::failed(Outcome::ConnectError);
            }
            let stale_possible = self.served;
            match self.round_trip(shared.keep_order_ids).await {
                Ok((answer, close)) => {
                    if close {
                        self.close();
                    } else {
                        self.served = true;
                    }
                    return answer;
                }
                Err(Failure::NothingReceived) if stale_possible => {
                    // Closed while idle: once more on a fresh connection (which is not
                    // stale, so this loop runs at most twice).
                    self.close();
                    self.resends += 1;
                }
                Err(_) => {
                    self.close();
                    return Answer::failed(Outcome::IoError);
                }
            }
        }
    }
}

impl OwnConn {
    /// Writes the request and reads one whole answer. Returns the classified answer and
    /// whether the connection must close after it.
    async fn round_trip(&mut self, keep_order_id: bool) -> Result<(Answer, bool), Failure> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(Failure::NothingReceived);
        };
        stream
            .write_all(&self.request)
            .await
            .map_err(|_| Failure::NothingReceived)?;
        let mut received = self.end > self.start;
        let mut eof = false;
        loop {
            if received {
                let input = &self.buf[self.start..self.end];
                match http1::parse(input, eof, &mut self.body) {
                    Ok(Some(parsed)) => {
                        let body = match &parsed.body {
                            Body::InInput(range) => &input[range.clone()],
                            Body::Decoded => &self.body[..],
                        };
                        let answer = classify(parsed.status, body, keep_order_id);
                        self.start += parsed.consumed;
                        if self.start == self.end {
                            (self.start, self.end) = (0, 0);
                        }
                        return Ok((answer, parsed.close || eof));
                    }
                    Ok(None) => {}
                    Err(_) => return Err(Failure::Broken),
                }
            }
            if self.end == self.buf.len()
                && !make_room(&mut self.buf, &mut self.start, &mut self.end)
            {
                return Err(Failure::Broken);
            }
            match stream.read(&mut self.buf[self.end..]).await {
                Ok(0) if !received => return Err(Failure::NothingReceived),
                Ok(0) => eof = true,
                Ok(n) => {
                    self.end += n;
                    received = true;
                }
                Err(_) if !received => return Err(Failure::NothingReceived),
                Err(_) => return Err(Failure::Broken),
            }
        }
    }
}

/// Frees space at the end of the read buffer `buf[start..end]`: moves the unread bytes to
/// the front, or grows the buffer up to the largest answer accepted.
fn make_room(buf: &mut Vec<u8>, start: &mut usize, end: &mut usize) -> bool {
    if *start > 0 {
        buf.copy_within(*start..*end, 0);
        *end -= *start;
        *start = 0;
        return true;
    }
    let limit = MAX_HEAD + MAX_BODY + 64 * 1024;
    if buf.len() >= limit {
        return false;
    }
    let grown = (buf.len() * 2).min(limit);
    buf.resize(grown, 0);
    true
}
