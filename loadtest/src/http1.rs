//! HTTP/1.1 for the own engine's hot loop: the request bytes, built once per target and
//! re-rendered into a reused buffer per request, and a sans-IO response parser.
//!
//! The parser is a pure function of the bytes received so far (`parse`): it either finds a
//! whole response (status, body, whether the connection must close), says it needs more
//! bytes, or says the bytes are not HTTP. It re-parses from the start of the response on
//! every call: answers are small and nearly always arrive in one read, so keeping state
//! between reads would cost more than it saves. Framing follows RFC 9112: interim 1xx
//! answers are skipped, `Transfer-Encoding: chunked` wins over `Content-Length`, 204 and
//! 304 have no body, and without either header the body runs to the end of the connection.
//! A chunked body is decoded into a caller's reused buffer; any other body is a range of
//! the input, so nothing is copied or allocated per response.

use std::ops::Range;

use crate::target::Target;

/// Header lines accepted in one response.
const MAX_HEADERS: usize = 64;
/// Longest response head accepted (status line and headers).
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest body accepted; larger is treated as a broken answer (a buy answer is ~100 bytes).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// The request of one target: `GET <path>?...user=` + digits + ` HTTP/1.1` + `Host`.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    head: Vec<u8>,
    tail: Vec<u8>,
    with_user_ids: bool,
}

impl RequestTemplate {
    pub fn new(target: &Target) -> Self {
        Self {
            head: format!("GET {}", target.request_prefix()).into_bytes(),
            tail: format!(" HTTP/1.1\r\nHost: {}\r\n\r\n", target.authority).into_bytes(),
            with_user_ids: target.with_user_ids(),
        }
    }

    /// Writes the request for `user` into `out` (cleared first; its capacity is reused).
    pub fn render(&self, user: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.head);
        if self.with_user_ids {
            push_decimal(out, user);
        }
        out.extend_from_slice(&self.tail);
    }
}

/// Appends the decimal digits of `n` (no allocation).
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Why bytes are not a usable HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Not HTTP/1.x (bad status line, bad header, bad chunk framing, bad length).
    Malformed,
    /// The head or the body is larger than this client accepts.
    TooLarge,
    /// The connection ended before the answer was complete.
    Truncated,
}

/// Where the body is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A range of the parsed input.
    InInput(Range<usize>),
    /// Decoded (chunked) into the caller's buffer.
    Decoded,
}

/// One whole response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub status: u16,
    pub body: Body,
    /// Bytes of the input the response took (the next response starts there).
    pub consumed: usize,
    /// The connection cannot carry another request (`Connection: close`, HTTP/1.0 without
    /// keep-alive, or a body delimited by the end of the connection).
    pub close: bool,
}

enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
    Empty,
}

/// Parses one response from `input`. `eof`: the connection has ended, so nothing more
/// will come. `Ok(None)`: incomplete, read more. A chunked body is decoded into `decoded`.
pub fn parse(input: &[u8], eof: bool, decoded: &mut Vec<u8>) -> Result<Option<Parsed>, ParseError> {
    let mut offset = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        let head_len = match response.parse(&input[offset..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if eof => return Err(ParseError::Truncated),
            Ok(httparse::Status::Partial) if input.len() - offset > MAX_HEAD => {
                return Err(ParseError::TooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(ParseError::Malformed),
        };
        let status = response.code.ok_or(ParseError::Malformed)?;
        // HTTP/1.0 closes unless it asks to keep alive; HTTP/1.1 the other way round.
        let mut close = response.version != Some(1);
        let mut length: Option<usize> = None;
        let mut chunked = false;
        for h in response.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let n = parse_length(h.value)?;
                if length.is_some_and(|l| l != n) {
                    return Err(ParseError::Malformed);
                }
                length = Some(n);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                // Chunked must be the last coding; anything else has no length we trust.
                chunked = last_token(h.value).is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
            } else if h.name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|b| *b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        close = false;
                    }
                }
            }
        }
        let body_start = offset + head_len;
        if (100..200).contains(&status) && status != 101 {
            // An interim answer (100 Continue, 103 Early Hints): the real one follows.
            offset = body_start;
            continue;
        }
        let framing = if status == 204 || status == 304 || (100..200).contains(&status) {
            Framing::Empty
        } else if chunked {
            Framing::Chunked
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        return match framing {
            Framing::Empty => Ok(Some(Parsed {
                status,
                body: Body::InInput(body_start..body_start),
                consumed: body_start,
                close,
            })),
            Framing::Length(n) if n > MAX_BODY => Err(ParseError::TooLarge),
            Framing::Length(n) => {
                let end = body_start + n;
                if input.len() >= end {
                    Ok(Some(Parsed {
                        status,
                        body: Body::InInput(body_start..end),
                        consumed: end,
                        close,
                    }))
                } else if eof {
                    Err(ParseError::Truncated)
                } else {
                    Ok(None)
                }
            }
            Framing::Chunked => {
                Ok(
                    decode_chunked(input, body_start, eof, decoded)?.map(|end| Parsed {
                        status,
                        body: Body::Decoded,
                        consumed: end,
                        close,
                    }),
                )
            }
            Framing::UntilClose if input.len() - body_start > MAX_BODY => Err(ParseError::TooLarge),
            Framing::UntilClose if eof => Ok(Some(Parsed {
                status,
                body: Body::InInput(body_start..input.len()),
                consumed: input.len(),
                close: true,
            })),
            Framing::UntilClose => Ok(None),
        };
    }
}

fn parse_length(value: &[u8]) -> Result<usize, ParseError> {
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::Malformed);
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ParseError::Malformed)
}

fn last_token(value: &[u8]) -> Option<&[u8]> {
    value
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .rfind(|t| !t.is_empty())
}

/// Decodes a chunked body starting at `pos`; returns where the message ends.
fn decode_chunked(
    input: &[u8],
    mut pos: usize,
    eof: bool,
    out: &mut Vec<u8>,
) -> Result<Option<usize>, ParseError> {
    out.clear();
    let more = || {
        if eof {
            Err(ParseError::Truncated)
        } else {
            Ok(None)
        }
    };
    loop {
        let (size_len, size) = match httparse::parse_chunk_size(&input[pos..]) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) => return more(),
            Err(_) => return Err(ParseError::Malformed),
        };
        pos += size_len;
        if size == 0 {
            // Trailer lines, if any, up to an empty line.
            loop {
                let Some(line) = input[pos..].windows(2).position(|w| w == b"\r\n") else {
                    return more();
                };
                pos += line + 2;
                if line == 0 {
                    return Ok(Some(pos));
                }
            }
        }
        let size = usize::try_from(size).map_err(|_| ParseError::TooLarge)?;
        if out.len().saturating_add(size) > MAX_BODY {
            return Err(ParseError::TooLarge);
        }
        if input.len() < pos + size + 2 {
            return more();
        }
        out.extend_from_slice(&input[pos..pos + size]);
        if &input[pos + size..pos + size + 2] != b"\r\n" {
            return Err(ParseError::Malformed);
        }
        pos += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8], eof: bool) -> (Result<Option<Parsed>, ParseError>, Vec<u8>) {
        let mut decoded = Vec::new();
        (parse(input, eof, &mut decoded), decoded)
    }

    fn body<'a>(input: &'a [u8], parsed: &Parsed, decoded: &'a [u8]) -> &'a [u8] {
        match &parsed.body {
            Body::InInput(r) => &input[r.clone()],
            Body::Decoded => decoded,
        }
    }

    #[test]
    fn the_request_carries_the_user_id_and_the_host() {
        let target = Target::parse("http://127.0.0.1:5000/http/buy?x=1", true).unwrap();
        let template = RequestTemplate::new(&target);
        let mut out = Vec::new();
        template.render(42, &mut out);
        assert_eq!(
            out,
            b"GET /http/buy?x=1&user=42 HTTP/1.1\r\nHost: 127.0.0.1:5000\r\n\r\n"
        );
        let capacity = out.capacity();
        template.render(18_446_744_073_709_551_615, &mut out);
        assert!(out.starts_with(b"GET /http/buy?x=1&user=18446744073709551615 HTTP/1.1"));
        assert_eq!(out.capacity(), capacity.max(out.len()));
        template.render(0, &mut out);
        assert!(out.starts_with(b"GET /http/buy?x=1&user=0 HTTP"));
    }

    #[test]
    fn a_request_without_user_ids_is_the_path_as_given() {
        let target = Target::parse("http://h:8/healthz", false).unwrap();
        let mut out = Vec::new();
        RequestTemplate::new(&target).render(7, &mut out);
        assert_eq!(out, b"GET /healthz HTTP/1.1\r\nHost: h:8\r\n\r\n");
    }

    #[test]
    fn a_content_length_body_is_a_range_of_the_input() {
        let input = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\nHTTP/1.1";
        let (parsed, decoded) = parse_all(input, false);
        let parsed = parsed.unwrap().unwrap();
        assert_eq!((parsed.status, parsed.close), (200, false));
        assert_eq!(body(input, &parsed, &decoded), b"ok\n");
        assert_eq!(parsed.consumed, input.len() - b"HTTP/1.1".len());
    }

    #[test]
    fn an_incomplete_answer_asks_for_more_and_is_truncated_at_eof() {
        for input in [
            &b"HTTP/1.1 200 OK\r\nContent-Len"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
        ] {
            assert_eq!(parse_all(input, false).0, Ok(None), "{input:?}");
            assert_eq!(
                parse_all(input, true).0,
                Err(ParseError::Truncated),
                "{input:?}"
            );
        }
    }

    #[test]
    fn a_chunked_body_is_decoded_with_extensions_and_trailers() {
        let input =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 99\r\n\r\n\
                      4;ext=1\r\n{\"ou\r\n5\r\ntcome\r\n0\r\nX-Trailer: y\r\n\r\n";
        let (parsed, decoded) = parse_all(input, false);
        let parsed = parsed.unwrap().unwrap();
        assert_eq!(body(input, &parsed, &decoded), b"{\"outcome");
        assert_eq!(parsed.consumed, input.len());
    }

    #[test]
    fn bad_chunk_framing_is_malformed() {
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n";
        assert_eq!(parse_all(input, false).0, Err(ParseError::Malformed));
        let input = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert_eq!(parse_all(input, false).0, Err(ParseError::Malformed));
    }

    #[test]
    fn connection_close_and_http_1_0_end_the_connection() {
        let close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert!(parse_all(close, false).0.unwrap().unwrap().close);
        let old = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(parse_all(old, false).0.unwrap().unwrap().close);
        let old_kept = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n";
        assert!(!parse_all(old_kept, false).0.unwrap().unwrap().close);
    }

    #[test]
    fn without_a_length_the_body_runs_to_the_end_of_the_connection() {
        let input = b"HTTP/1.1 200 OK\r\n\r\nhello";
        assert_eq!(parse_all(input, false).0, Ok(None));
        let (parsed, decoded) = parse_all(input, true);
        let parsed = parsed.unwrap().unwrap();
        assert!(parsed.close);
        assert_eq!(body(input, &parsed, &decoded), b"hello");
    }

    #[test]
    fn interim_answers_are_skipped_and_204_has_no_body() {
        let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let parsed = parse_all(input, false).0.unwrap().unwrap();
        assert_eq!((parsed.status, parsed.consumed), (204, input.len()));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for input in [
            &b"hello world\r\n\r\n"[..],
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"\x00\x01\x02\x03",
        ] {
            assert_eq!(
                parse_all(input, false).0,
                Err(ParseError::Malformed),
                "{input:?}"
            );
        }
    }

    #[test]
    fn oversized_heads_and_bodies_are_refused() {
        let mut head = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        head.resize(MAX_HEAD + 10, b'a');
        assert_eq!(parse_all(&head, false).0, Err(ParseError::TooLarge));
        let big = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(
            parse_all(big.as_bytes(), false).0,
            Err(ParseError::TooLarge)
        );
    }
}
