//! What an event adds to a chart: an effective play, or one of the engagements the heat index
//! weighs. Everything else (impressions, skips, follows, reports) adds nothing.

use reelrank_core::{Event, EventKind};
use serde::Deserialize;

/// What one event contributes to an item's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tally {
    /// A play watched far enough to count (see [`EffectiveRule`]).
    EffectivePlay,
    /// A like.
    Like,
    /// A comment.
    Comment,
    /// A share.
    Share,
}

/// When a play counts as effective: it was finished, or one `watch` event reached `fraction` of
/// the item's duration or `cap_secs`, whichever is less (`cap_secs` alone for an item of unknown
/// duration). The cap follows the industry's long-form rule (a few minutes of an episode count;
/// a 40-minute episode need not be watched for 12 of them), the fraction the short forms', where
/// a play of a few seconds is a swipe.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EffectiveRule {
    /// Share of the duration watched.
    pub fraction: f64,
    /// Seconds watched that count whatever the duration.
    pub cap_secs: f64,
}

impl Default for EffectiveRule {
    fn default() -> EffectiveRule {
        EffectiveRule { fraction: 0.3, cap_secs: 360.0 }
    }
}

impl EffectiveRule {
    /// Milliseconds a watch of an item lasting `duration_s` must reach.
    pub fn threshold_ms(&self, duration_s: Option<f64>) -> f64 {
        let cap = self.cap_secs * 1000.0;
        duration_s.map_or(cap, |duration| (self.fraction * duration * 1000.0).min(cap))
    }

    /// What `event` on an item lasting `duration_s` contributes, if anything.
    pub fn tally(&self, event: &Event, duration_s: Option<f64>) -> Option<Tally> {
        match event.kind {
            EventKind::Finish => Some(Tally::EffectivePlay),
            EventKind::Watch => {
                event.value.filter(|&ms| ms >= self.threshold_ms(duration_s)).map(|_| Tally::EffectivePlay)
            }
            EventKind::Like => Some(Tally::Like),
            EventKind::Comment => Some(Tally::Comment),
            EventKind::Share => Some(Tally::Share),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use reelrank_core::Timestamp;

    use super::*;

    fn watch(ms: f64) -> Event {
        Event { value: Some(ms), ..Event::new("u", "i", EventKind::Watch, Timestamp(0)) }
    }

    #[test]
    fn a_watch_is_effective_past_the_fraction_or_the_cap() {
        let rule = EffectiveRule::default();
        // A 60 s video: 18 s count.
        assert_eq!(rule.tally(&watch(17_999.0), Some(60.0)), None);
        assert_eq!(rule.tally(&watch(18_000.0), Some(60.0)), Some(Tally::EffectivePlay));
        // A 45-minute episode: 6 minutes count.
        assert_eq!(rule.tally(&watch(359_000.0), Some(2700.0)), None);
        assert_eq!(rule.tally(&watch(360_000.0), Some(2700.0)), Some(Tally::EffectivePlay));
        assert_eq!(rule.tally(&watch(360_000.0), None), Some(Tally::EffectivePlay));
        let finish = Event::new("u", "i", EventKind::Finish, Timestamp(0));
        assert_eq!(rule.tally(&finish, Some(60.0)), Some(Tally::EffectivePlay));
        let play = Event::new("u", "i", EventKind::Play, Timestamp(0));
        assert_eq!(rule.tally(&play, Some(60.0)), None);
        let share = Event::new("u", "i", EventKind::Share, Timestamp(0));
        assert_eq!(rule.tally(&share, None), Some(Tally::Share));
    }
}
