//! The reference engine (`--engine hyper`): one hyper HTTP/1 client connection per client.
//!
//! Kept to check the own engine against (same server, same outcome counts) and as a
//! fallback. The connection future is polled inline, in the client's own task, while a
//! request is in flight (rather than spawned as a task of its own): one task wake-up per
//! answer instead of two cross-task hand-offs.

use std::net::SocketAddr;
use std::pin::Pin;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::HOST;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{Connection, Request, Shared};
use crate::outcome::{Answer, Outcome, classify};

/// The hyper connection future: it does the socket I/O for its `SendRequest`.
type Driver = hyper::client::conn::http1::Connection<TokioIo<TcpStream>, Empty<Bytes>>;

/// One client's hyper connection; `None` until connected or after it was dropped.
#[derive(Default)]
pub(crate) struct HyperConn {
    sender: Option<SendRequest<Empty<Bytes>>>,
    connection: Option<Pin<Box<Driver>>>,
}

impl Connection for HyperConn {
    fn new(_shared: &Shared) -> Self {
        Self::default()
    }

    async fn connect(&mut self, shared: &Shared) -> Result<(), ()> {
        self.close();
        let (sender, connection) = connect(shared.addr).await?;
        self.sender = Some(sender);
        self.connection = Some(Box::pin(connection));
        Ok(())
    }

    fn close(&mut self) {
        self.sender = None;
        self.connection = None;
    }

    async fn attempt(&mut self, shared: &Shared, request: Request) -> Answer {
        if !self.usable().await {
            self.close();
            match connect(shared.addr).await {
                Ok((sender, connection)) => {
                    self.sender = Some(sender);
                    self.connection = Some(Box::pin(connection));
                }
                Err(()) => return Answer::failed(Outcome::ConnectError),
            }
        }
        let (Some(sender), Some(connection)) = (self.sender.as_mut(), self.connection.as_mut())
        else {
            return Answer::failed(Outcome::ConnectError);
        };
        let mut http_request = hyper::Request::new(Empty::new());
        *http_request.uri_mut() = shared.request_uri(request);
        http_request.headers_mut().insert(HOST, shared.host.clone());
        let mut ended = false;
        let answer = {
            let exchange = async {
                sender.ready().await.map_err(drop)?;
                let response = sender.send_request(http_request).await.map_err(drop)?;
                let status = response.status().as_u16();
                let body = read_body(response.into_body()).await?;
                Ok::<_, ()>(classify(status, &body, shared.keep_order_ids))
            };
            let mut exchange = std::pin::pin!(exchange);
            tokio::select! {
                biased;
                answer = &mut exchange => answer,
                // The connection ended (e.g. `Connection: close` after the last answer):
                // what it already delivered is still readable, so finish from that.
                _ = connection.as_mut() => {
                    ended = true;
                    exchange.await
                }
            }
        };
        if ended || answer.is_err() {
            self.close();
        }
        answer.unwrap_or_else(|()| Answer::failed(Outcome::IoError))
    }
}

impl HyperConn {
    /// Whether the kept-alive connection can take a request; `false` when the server has
    /// closed it meanwhile (not an error: the caller reconnects).
    async fn usable(&mut self) -> bool {
        let (Some(sender), Some(connection)) = (self.sender.as_mut(), self.connection.as_mut())
        else {
            return false;
        };
        if sender.is_ready() {
            return true;
        }
        tokio::select! {
            biased;
            ready = sender.ready() => ready.is_ok(),
            _ = connection.as_mut() => false,
        }
    }
}

async fn connect(addr: SocketAddr) -> Result<(SendRequest<Empty<Bytes>>, Driver), ()> {
    let stream = TcpStream::connect(addr).await.map_err(drop)?;
    // Small requests and answers: do not let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    hyper::client::conn::http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(drop)
}

/// The whole body; no copy when it comes in one frame, as small answers do.
async fn read_body(mut body: hyper::body::Incoming) -> Result<Bytes, ()> {
    let mut first = Bytes::new();
    let mut joined: Option<Vec<u8>> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(drop)?.into_data() else {
            continue;
        };
        match &mut joined {
            Some(all) => all.extend_from_slice(&data),
            None if first.is_empty() => first = data,
            None => {
                let mut all = first.to_vec();
                all.extend_from_slice(&data);
                joined = Some(all);
            }
        }
    }
    Ok(joined.map_or(first, Bytes::from))
}
