//! Which behaviour counts as a positive for retrieval: the training label, configurable because
//! platforms differ in what "the user wanted this" means.

use reelrank_core::{Event, EventKind};
use serde::{Deserialize, Serialize};

/// Rule turning events into positive (user, item) pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PositiveRule {
    /// Kinds that are positive by themselves.
    pub kinds: Vec<EventKind>,
    /// A `watch` is positive when it covers at least this share of the item's duration...
    pub min_watch_ratio: f64,
    /// ...or lasts at least this many milliseconds (for items of unknown or long duration).
    pub min_watch_ms: f64,
    /// A `rate` is positive at or above this rating.
    pub min_rating: f64,
}

impl Default for PositiveRule {
    fn default() -> PositiveRule {
        PositiveRule {
            kinds: vec![EventKind::Finish, EventKind::Like, EventKind::Share, EventKind::Comment],
            min_watch_ratio: 0.5,
            min_watch_ms: 30_000.0,
            min_rating: 4.0,
        }
    }
}

impl PositiveRule {
    /// Whether `event` is a positive; `duration_s` is the item's duration when known.
    pub fn is_positive(&self, event: &Event, duration_s: Option<f64>) -> bool {
        match (event.kind, event.value) {
            (EventKind::Watch, Some(ms)) => {
                ms >= self.min_watch_ms || duration_s.is_some_and(|d| ms >= self.min_watch_ratio * d * 1000.0)
            }
            (EventKind::Rate, Some(rating)) => rating >= self.min_rating,
            (kind, _) => self.kinds.contains(&kind),
        }
    }
}

#[cfg(test)]
mod tests {
    use reelrank_core::Timestamp;

    use super::*;

    fn event(kind: EventKind, value: Option<f64>) -> Event {
        Event { value, ..Event::new("u", "i", kind, Timestamp(0)) }
    }

    #[test]
    fn default_rule() {
        let rule = PositiveRule::default();
        assert!(rule.is_positive(&event(EventKind::Finish, None), None));
        assert!(rule.is_positive(&event(EventKind::Like, None), None));
        assert!(!rule.is_positive(&event(EventKind::Play, None), None));
        assert!(!rule.is_positive(&event(EventKind::Skip, None), None));
        // A 2-minute episode watched for 70 s passes the ratio; 20 s of it does not.
        assert!(rule.is_positive(&event(EventKind::Watch, Some(70_000.0)), Some(120.0)));
        assert!(!rule.is_positive(&event(EventKind::Watch, Some(20_000.0)), Some(120.0)));
        // 40 minutes of a 2-hour film pass the absolute threshold.
        assert!(rule.is_positive(&event(EventKind::Watch, Some(2_400_000.0)), Some(7200.0)));
        assert!(rule.is_positive(&event(EventKind::Rate, Some(4.0)), None));
        assert!(!rule.is_positive(&event(EventKind::Rate, Some(3.5)), None));
    }
}
