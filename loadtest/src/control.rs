//! Control calls to the target's origin: reset the sale, read it, wait for it to settle.
//!
//! These go through reqwest (not the hot loop): they are few, and reqwest gives timeouts,
//! JSON and clear errors for free. A target without `/sale` is fine: the store is then
//! "not read" and oversell is unknown.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::LoadtestError;
use crate::target::Target;

/// Buyers of the sell-out phase (`--sold-out-first`) use ids from here on: far from the
/// measured ids (from 1) and from the warm-up's (from 2^40).
pub const SELL_OUT_USER_BASE: u64 = 1 << 41;

/// Buys in flight at once while selling out.
const SELL_OUT_CONCURRENCY: usize = 64;

/// The sale's state as the store sees it (`GET /sale`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sale {
    pub stock: u64,
    pub orders: u64,
    #[serde(default)]
    pub oversold: Option<u64>,
    #[serde(default)]
    pub strategy: Option<String>,
    /// Every buyer the store holds (`GET /sale/orders`), ascending; `None` when the target
    /// does not list them, and lost orders can then only be bounded from the counts.
    #[serde(skip)]
    pub held_users: Option<Vec<u64>>,
}

impl Sale {
    /// Orders beyond stock; computed when the server does not say.
    pub fn oversold(&self) -> u64 {
        self.oversold
            .unwrap_or_else(|| self.orders.saturating_sub(self.stock))
    }
}

#[derive(Serialize)]
struct ResetBody<'a> {
    stock: u64,
    strategy: &'a str,
}

/// A client for one origin's control endpoints.
#[derive(Debug, Clone)]
pub struct Control {
    client: reqwest::Client,
    origin: String,
}

impl Control {
    pub fn new(origin: &str, timeout: Duration) -> Result<Self, LoadtestError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            // The target is always addressed directly; a proxy in the environment would
            // change what is measured.
            .no_proxy()
            .build()
            .map_err(|e| LoadtestError::Control {
                url: origin.to_string(),
                reason: format!("cannot build HTTP client: {e}"),
            })?;
        Ok(Self {
            client,
            origin: origin.trim_end_matches('/').to_string(),
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn failed(&self, url: &str, e: reqwest::Error) -> LoadtestError {
        if e.is_connect() {
            LoadtestError::Unreachable {
                target: self.origin.clone(),
                reason: "connection refused or failed".into(),
            }
        } else if e.is_timeout() {
            LoadtestError::Unreachable {
                target: self.origin.clone(),
                reason: "timed out".into(),
            }
        } else {
            LoadtestError::Control {
                url: url.to_string(),
                reason: e.to_string(),
            }
        }
    }

    /// Resets the sale (drops orders, sets stock and strategy) through `POST /admin/sale`.
    pub async fn reset_sale(
        &self,
        token: &str,
        stock: u64,
        strategy: &str,
    ) -> Result<(), LoadtestError> {
        let url = format!("{}/admin/sale", self.origin);
        let response = self
            .client
            .post(&url)
            .bearer_auth(token)
            .json(&ResetBody { stock, strategy })
            .send()
            .await
            .map_err(|e| self.failed(&url, e))?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            401 | 403 => Err(LoadtestError::AdminTokenRefused {
                origin: self.origin.clone(),
            }),
            404 => Err(LoadtestError::AdminApiOff {
                origin: self.origin.clone(),
            }),
            status => {
                let body = response.text().await.unwrap_or_default();
                Err(LoadtestError::AdminFailed {
                    origin: self.origin.clone(),
                    status,
                    body: body.chars().take(200).collect(),
                })
            }
        }
    }

    /// Whether `GET /healthz` answers 200 now.
    pub async fn healthy(&self) -> bool {
        let url = format!("{}/healthz", self.origin);
        matches!(self.client.get(&url).send().await, Ok(r) if r.status().is_success())
    }

    /// Reads `GET /sale`. `Ok(None)` when the target has no sale endpoint (not found, or
    /// not the sale JSON): the caller reports the store as not read.
    pub async fn read_sale(&self) -> Result<Option<Sale>, LoadtestError> {
        self.get_optional_json("/sale").await
    }

    /// GETs `path` from the origin: `Ok(None)` when the target does not serve it (a non-2xx
    /// answer, or a body that is not the expected JSON); `Err` only when it cannot be reached.
    async fn get_optional_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, LoadtestError> {
        let url = format!("{}{path}", self.origin);
        let response = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| self.failed(&url, e))?;
        if !response.status().is_success() {
            return Ok(None);
        }
        Ok(response.json::<T>().await.ok())
    }

    /// Sells the whole stock through `target` (buyers from [`SELL_OUT_USER_BASE`] on),
    /// until `/sale` shows as many orders as units: the "after sell-out" scenario starts
    /// from there. Fails when the target has no `/sale` or stops selling.
    pub async fn sell_out(&self, target: &Target) -> Result<(), LoadtestError> {
        let sale_url = format!("{}/sale", self.origin);
        let mut next = SELL_OUT_USER_BASE;
        let mut last_orders = None;
        let mut stalled = 0;
        loop {
            let Some(sale) = self.read_sale().await? else {
                return Err(LoadtestError::Control {
                    url: sale_url,
                    reason: "the target has no /sale: --sold-out-first cannot tell when the \
                             stock is sold"
                        .into(),
                });
            };
            if sale.orders >= sale.stock {
                return Ok(());
            }
            if last_orders == Some(sale.orders) {
                stalled += 1;
                if stalled >= 5 {
                    return Err(LoadtestError::Control {
                        url: sale_url,
                        reason: format!(
                            "--sold-out-first: the sale stays at {} of {} orders; is the route serving?",
                            sale.orders, sale.stock
                        ),
                    });
                }
            } else {
                stalled = 0;
            }
            last_orders = Some(sale.orders);
            let round = (sale.stock - sale.orders).min(10_000);
            let mut buys = tokio::task::JoinSet::new();
            for _ in 0..round {
                while buys.len() >= SELL_OUT_CONCURRENCY {
                    buys.join_next().await;
                }
                let url = format!("{}{}", self.origin, target.request_uri(next));
                next += 1;
                let client = self.client.clone();
                // Each answer is read to the end; its outcome does not matter, `/sale` does.
                buys.spawn(async move {
                    if let Ok(response) = client.get(url).send().await {
                        let _ = response.bytes().await;
                    }
                });
            }
            while buys.join_next().await.is_some() {}
        }
    }

    /// Reads every buyer the store holds, page by page, from `GET /sale/orders`.
    /// `Ok(None)` when the target has no such endpoint (or does not answer it as expected).
    pub async fn read_held_users(&self) -> Result<Option<Vec<u64>>, LoadtestError> {
        #[derive(Deserialize)]
        struct Page {
            user_ids: Vec<u64>,
            next_after: Option<u64>,
        }
        let mut held = Vec::new();
        let mut after = 0;
        loop {
            let Some(page) = self
                .get_optional_json::<Page>(&format!("/sale/orders?after={after}"))
                .await?
            else {
                return Ok(None);
            };
            held.extend(page.user_ids);
            match page.next_after {
                // A page must move forward; anything else is not the contract.
                Some(next) if next > after => after = next,
                Some(_) => return Ok(None),
                None => return Ok(Some(held)),
            }
        }
    }

    /// Waits until the sale's order count is stable across two reads `interval` apart
    /// (work still queued behind timed-out requests has landed), at most `max` long.
    /// Returns the last read; `None` when the target has no sale endpoint.
    pub async fn wait_until_drained(
        &self,
        interval: Duration,
        max: Duration,
    ) -> Result<Option<Sale>, LoadtestError> {
        let deadline = Instant::now() + max;
        let Some(mut last) = self.read_sale().await? else {
            return Ok(None);
        };
        loop {
            tokio::time::sleep(interval).await;
            let Some(now) = self.read_sale().await? else {
                return Ok(None);
            };
            if now.orders == last.orders || Instant::now() >= deadline {
                return Ok(Some(now));
            }
            last = now;
        }
    }
}
