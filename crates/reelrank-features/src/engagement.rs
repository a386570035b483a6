//! Recency-decayed engagement counters of one user or one item: how often it was shown and how
//! often each action followed. The ranking model's dense features are these counters' rates, so
//! that a new item with three likes in ten showings and an old one with thousands are compared on
//! the same scale.

use serde::{Deserialize, Serialize};

use crate::outcomes::{Impression, ACTIONS};

/// Dense features of one side (see [`Engagement::features`]).
pub const ENGAGEMENT_FEATURES: usize = 2 + ACTIONS.len();

/// Impressions of weight that the smoothed rates start from: a rate is pulled towards the prior
/// until about this many showings back it.
const PRIOR_IMPRESSIONS: f32 = 10.0;

/// Counts as of `updated_ms`, each weighed `0.5^(age / half-life)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Engagement {
    impressions: f32,
    plays: f32,
    actions: [f32; ACTIONS.len()],
    updated_ms: i64,
}

/// What [`Engagement::count`] adds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// A showing.
    pub shown: bool,
    /// A play.
    pub played: bool,
    /// Actions, bit `1 << a` for action `a` of [`ACTIONS`].
    pub actions: u16,
}

impl Counts {
    /// All of `impression`: its showing and its outcomes.
    pub fn of(impression: &Impression) -> Counts {
        Counts { shown: true, played: impression.outcome.played, actions: impression.outcome.actions }
    }
}

/// The averages that smoothed rates start from, and the counters' half-life; fitted on training
/// impressions and saved with a model, so serving computes the same features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngagementPrior {
    /// Half-life of the counters, in milliseconds.
    pub half_life_ms: f64,
    /// Play rate, then each action's rate, over all training impressions.
    pub rates: [f32; 1 + ACTIONS.len()],
}

impl EngagementPrior {
    /// The average rates of `impressions` (labelled, see [`crate::WatchQuantiles::label`]).
    pub fn fit(impressions: &[Impression], half_life_ms: f64) -> EngagementPrior {
        let n = impressions.len().max(1) as f32;
        let mut rates = [0.0; 1 + ACTIONS.len()];
        rates[0] = impressions.iter().filter(|i| i.outcome.played).count() as f32 / n;
        for (a, rate) in rates[1..].iter_mut().enumerate() {
            *rate = impressions.iter().filter(|i| i.did(a)).count() as f32 / n;
        }
        EngagementPrior { half_life_ms, rates }
    }
}

impl Engagement {
    /// When the counters last changed (Unix ms).
    pub fn updated_ms(&self) -> i64 {
        self.updated_ms
    }

    fn decayed_to(mut self, now_ms: i64, half_life_ms: f64) -> Engagement {
        if now_ms > self.updated_ms {
            let factor = 0.5f64.powf((now_ms - self.updated_ms) as f64 / half_life_ms) as f32;
            self.impressions *= factor;
            self.plays *= factor;
            self.actions.iter_mut().for_each(|a| *a *= factor);
            self.updated_ms = now_ms;
        }
        self
    }

    /// Counts, at `ts_ms`, a showing and outcomes: all of an impression at once, or what an
    /// outcome adds to one counted before.
    pub fn count(&mut self, ts_ms: i64, counts: Counts, prior: &EngagementPrior) {
        *self = self.decayed_to(ts_ms, prior.half_life_ms);
        self.impressions += f32::from(u8::from(counts.shown));
        self.plays += f32::from(u8::from(counts.played));
        for (a, count) in self.actions.iter_mut().enumerate() {
            *count += f32::from(u8::from(counts.actions & (1 << a) != 0));
        }
    }

    /// `[ln(1 + impressions), play rate, each action's rate]` as of `now_ms`, rates smoothed
    /// towards `prior`.
    pub fn features(&self, now_ms: i64, prior: &EngagementPrior) -> [f32; ENGAGEMENT_FEATURES] {
        let current = self.decayed_to(now_ms, prior.half_life_ms);
        let n = current.impressions + PRIOR_IMPRESSIONS;
        let mut features = [0.0; ENGAGEMENT_FEATURES];
        features[0] = current.impressions.ln_1p();
        let counts = std::iter::once(current.plays).chain(current.actions);
        for ((feature, count), rate) in features[1..].iter_mut().zip(counts).zip(prior.rates) {
            *feature = (count + rate * PRIOR_IMPRESSIONS) / n;
        }
        features
    }
}

/// [`Engagement::features`] by name, for explanations: `showings` (the decayed count, not its
/// log), then the smoothed rates of `play` and of each action.
pub fn describe_engagement(features: &[f32]) -> Vec<(&'static str, f32)> {
    let names = ["showings", "play"].into_iter().chain(ACTIONS);
    let values = features.first().map(|f| f.exp_m1()).into_iter().chain(features.iter().skip(1).copied());
    names.zip(values).collect()
}

#[cfg(test)]
mod tests {
    use reelrank_core::Timestamp;

    use super::*;

    fn shown(ts: i64, actions: u16) -> Impression {
        Impression {
            user_id: "u".into(),
            item_id: "i".into(),
            ts: Timestamp(ts),
            context: None,
            implicit: false,
            outcome: crate::Outcome { played: actions != 0, watch_ms: 0.0, actions },
        }
    }

    #[test]
    fn rates_start_at_the_prior_and_decay_with_age() {
        let like = ACTIONS.iter().position(|&a| a == "like").unwrap();
        let prior = EngagementPrior { half_life_ms: 1000.0, rates: [0.5; 1 + ACTIONS.len()] };
        let fresh = Engagement::default().features(0, &prior);
        assert_eq!(fresh[0], 0.0);
        assert_eq!(fresh[2 + like], 0.5, "no showings: the prior");
        let mut counters = Engagement::default();
        for t in 0..10 {
            counters.count(t, Counts::of(&shown(t, 1 << like)), &prior);
        }
        let now = counters.features(10, &prior);
        // Ten likes in ten showings, pulled halfway back by ten prior showings at 0.5: 0.75.
        assert!((now[2 + like] - 0.75).abs() < 0.01, "{}", now[2 + like]);
        assert!((now[0] - 11f32.ln()).abs() < 0.05);
        // A half-life later the showings weigh half: the rate is pulled further back.
        let later = counters.features(1010, &prior);
        assert!((later[0] - 6f32.ln()).abs() < 0.05);
        assert!((later[2 + like] - (5.0 + 5.0) / 15.0).abs() < 0.01, "{}", later[2 + like]);
    }
}
