//! The gate's rules, as plain data: what the gate knows (the newest generation, the event
//! link, the winners of a closed sale) and how each piece of news changes it. No I/O, so the
//! rules that keep the gate from answering a false `sold_out` are tested alone.

use std::collections::HashMap;

use order_core::{BuyResponse, OrderId, UserId};

/// What the gate knows. Plain data with the rules of the gate, so they are tested alone.
#[derive(Debug, Default)]
pub(super) struct Knowledge {
    /// The newest sale generation heard of: from the store, a reset, or an event.
    pub(super) generation: u64,
    /// The event link is up.
    pub(super) linked: bool,
    /// Counts the times the link came up. A verification that began under an earlier link
    /// (or none) may have missed a reset, so it cannot close the gate.
    pub(super) link_epoch: u64,
    pub(super) closed: Option<Closed>,
}

#[derive(Debug)]
pub(super) struct Closed {
    pub(super) generation: u64,
    pub(super) winners: HashMap<u64, OrderId>,
}

impl Knowledge {
    /// The store's answer, if the gate is closed.
    pub(super) fn answer(&self, user: UserId) -> Option<BuyResponse> {
        let closed = self.closed.as_ref()?;
        Some(match closed.winners.get(&user.get()) {
            Some(order_id) => BuyResponse::already_ordered(user, order_id.clone()),
            None => BuyResponse::sold_out(user),
        })
    }

    /// A sale of `generation` exists: anything closed for an older one reopens.
    pub(super) fn heard_of(&mut self, generation: u64) {
        if generation > self.generation {
            self.generation = generation;
        }
        if self
            .closed
            .as_ref()
            .is_some_and(|closed| closed.generation < self.generation)
        {
            self.closed = None;
        }
    }

    /// Closes for `generation` with its final `winners`, read by a verification that began
    /// under link `epoch`, unless a newer sale is known or the link was not up all along.
    /// Returns whether it closed.
    pub(super) fn close(
        &mut self,
        generation: u64,
        winners: HashMap<u64, OrderId>,
        epoch: u64,
    ) -> bool {
        self.heard_of(generation);
        if !self.linked || epoch != self.link_epoch || generation < self.generation {
            return false;
        }
        self.closed = Some(Closed {
            generation,
            winners,
        });
        true
    }

    pub(super) fn link_up(&mut self) {
        self.linked = true;
        self.link_epoch += 1;
    }

    pub(super) fn link_lost(&mut self) {
        self.linked = false;
        self.closed = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: u64) -> UserId {
        UserId::new(id).unwrap()
    }

    fn winners(ids: &[u64]) -> HashMap<u64, OrderId> {
        ids.iter().map(|&id| (id, format!("order-{id}"))).collect()
    }

    fn linked() -> Knowledge {
        let mut knowledge = Knowledge::default();
        knowledge.link_up();
        knowledge
    }

    #[test]
    fn a_closed_gate_answers_winners_with_their_order_and_others_sold_out() {
        let mut knowledge = linked();
        assert!(knowledge.answer(user(1)).is_none(), "open: no answer");
        assert!(knowledge.close(3, winners(&[1, 2]), 1));

        let winner = knowledge.answer(user(2)).unwrap();
        assert_eq!(
            winner,
            BuyResponse::already_ordered(user(2), "order-2".into())
        );
        assert_eq!(
            knowledge.answer(user(9)).unwrap(),
            BuyResponse::sold_out(user(9))
        );
    }

    #[test]
    fn a_newer_generation_reopens_and_an_older_one_cannot_close() {
        let mut knowledge = linked();
        assert!(knowledge.close(3, winners(&[1]), 1));
        knowledge.heard_of(4);
        assert!(knowledge.answer(user(1)).is_none(), "reset to 4 reopens");
        assert!(
            !knowledge.close(3, winners(&[1]), 1),
            "3 is stale once 4 is known"
        );
        assert!(knowledge.answer(user(1)).is_none());
        knowledge.heard_of(2);
        assert_eq!(knowledge.generation, 4, "generations never go back");
    }

    #[test]
    fn without_an_event_link_the_gate_stays_open() {
        let mut knowledge = Knowledge::default();
        assert!(!knowledge.close(1, winners(&[1]), 0));
        let mut knowledge = linked();
        assert!(knowledge.close(1, winners(&[1]), 1));
        knowledge.link_lost();
        assert!(knowledge.answer(user(5)).is_none());
        assert!(!knowledge.close(1, winners(&[1]), 1), "not until relinked");
        knowledge.link_up();
        assert!(
            !knowledge.close(1, winners(&[1]), 1),
            "a verification begun before the relink may have missed a reset"
        );
        assert!(knowledge.close(1, winners(&[1]), 2));
    }
}
