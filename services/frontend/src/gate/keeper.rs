//! The keeper: the gate's verifications. A hint (a `sold_out` answer or event, a new event
//! link) makes it re-read the store, and the gate closes only if the store itself says the
//! sale's buyers are final, after every winner of that one generation has been read. While
//! closed it re-reads the sale's generation every `--gate-recheck-ms`, so a reset that
//! bypassed the front tiers still reopens the gate.

use std::collections::HashMap;

use anyhow::Context;
use order_core::shutdown::Shutdown;
use order_core::{SaleOrdersPage, SaleState};
use queue_contract::events::SaleEvent;

use super::Gate;

/// Orders read per `/sale/orders` page while learning the winners.
const PAGE: u32 = 10_000;

impl Gate {
    /// The keeper: re-reads the store when told to, and, while closed, every recheck
    /// interval, so a reset that bypassed the front tiers still reopens the gate.
    pub(super) async fn keep(self, shutdown: Shutdown) {
        let mut recheck = tokio::time::interval(self.inner.settings.recheck);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        enum Wake {
            Verify,
            Recheck,
        }
        loop {
            let wake = tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.inner.verify.notified() => Wake::Verify,
                _ = recheck.tick() => Wake::Recheck,
            };
            match wake {
                Wake::Verify => {
                    if let Err(error) = self.try_close().await {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "cannot verify the sale's state; the gate stays open"
                        );
                    }
                }
                Wake::Recheck if self.is_closed() => {
                    if let Err(error) = self.recheck().await {
                        tracing::warn!(
                            error = format!("{error:#}"),
                            "cannot re-read the sale while closed"
                        );
                    }
                }
                Wake::Recheck => {}
            }
        }
    }

    /// Reads the sale; closes if the store says its buyers are final, learning them first.
    async fn try_close(&self) -> anyhow::Result<()> {
        let http = &self.inner.http;
        let epoch = self.inner.knowledge.read().unwrap().link_epoch;
        let sale: SaleState = http.get_json("/sale").await.context("reading /sale")?;
        self.update(|k| k.heard_of(sale.generation));
        if !self.inner.settings.enabled || !sale.buyers_final {
            return Ok(());
        }
        let mut winners = HashMap::new();
        let mut after = 0;
        loop {
            let page: SaleOrdersPage = http
                .get_json(&format!(
                    "/sale/orders?after={after}&limit={PAGE}&order_ids=true"
                ))
                .await
                .context("reading the winners")?;
            if page.generation != sale.generation {
                // A reset between the reads: that sale is gone, and this one is not over.
                self.update(|k| k.heard_of(page.generation));
                return Ok(());
            }
            let orders = page
                .orders
                .context("the store listed no order ids (`order_ids=true` was asked)")?;
            winners.extend(orders.into_iter().map(|o| (o.user_id, o.order_id)));
            match page.next_after {
                Some(next) => after = next,
                None => break,
            }
        }
        if winners.len() as u64 != sale.orders {
            anyhow::bail!(
                "the store listed {} winners for {} orders",
                winners.len(),
                sale.orders
            );
        }
        let count = winners.len();
        let closed = self.update(|k| k.close(sale.generation, winners, epoch));
        if closed {
            tracing::info!(
                generation = sale.generation,
                winners = count,
                "sold out: the gate is closed"
            );
            self.publish(SaleEvent::SoldOut {
                generation: sale.generation,
            })
            .await;
        }
        Ok(())
    }

    async fn recheck(&self) -> anyhow::Result<()> {
        let sale: SaleState = self
            .inner
            .http
            .get_json("/sale")
            .await
            .context("reading /sale")?;
        let reopened = self.update(|k| {
            let was_closed = k.closed.is_some();
            k.heard_of(sale.generation);
            was_closed && k.closed.is_none()
        });
        if reopened {
            tracing::info!(
                generation = sale.generation,
                "a newer sale exists: the gate is open"
            );
        }
        Ok(())
    }
}
