//! Sale events, broadcast on the `sale_events` fanout exchange to every front tier.
//!
//! An event is a hint, never a verdict: a front tier that hears `sold_out` re-reads the sale
//! from the store and closes its gate only if the store itself says the sale of that very
//! generation is sold out. Every event carries the sale's generation (incremented by every
//! reset), so a stale event can never close a newer sale's gate.
//!
//! Body (JSON): `{"event": "sold_out", "generation": 7}` or `{"event": "reset", "generation": 8}`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SaleEvent {
    /// The store has decided that the sale of this generation is sold out.
    SoldOut { generation: u64 },
    /// The sale was reset: this is the new sale's generation.
    Reset { generation: u64 },
}

impl SaleEvent {
    pub fn generation(self) -> u64 {
        match self {
            Self::SoldOut { generation } | Self::Reset { generation } => generation,
        }
    }

    pub fn to_json(self) -> Vec<u8> {
        serde_json::to_vec(&self).expect("a sale event serializes")
    }

    pub fn parse(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_the_documented_json_shape() {
        let sold_out = SaleEvent::SoldOut { generation: 7 };
        assert_eq!(
            serde_json::to_value(sold_out).unwrap(),
            serde_json::json!({"event": "sold_out", "generation": 7})
        );
        assert_eq!(
            SaleEvent::parse(br#"{"event":"reset","generation":8}"#).unwrap(),
            SaleEvent::Reset { generation: 8 }
        );
        assert!(SaleEvent::parse(br#"{"event":"party","generation":1}"#).is_err());
        assert!(SaleEvent::parse(b"junk").is_err());
    }
}
