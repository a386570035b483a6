//! The value model: what showing an item is worth, `Σ P(action) × weight` over the ranking
//! model's heads — the ranking objective Douyin describes. Negative actions (skip, not
//! interested, report) carry negative weights, so an item likely to be reported sinks however
//! likely it is to be watched. Each head's share is kept, so serving can explain a score.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Weight of each head's action; heads without a weight are worth nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ValueWeights(pub BTreeMap<String, f32>);

impl Default for ValueWeights {
    /// Positive engagement weighs by its effort (a follow more than a like, a like more than a
    /// finished play); negative feedback weighs against, a report most.
    fn default() -> ValueWeights {
        let weights = [
            ("effective_play", 1.0),
            ("finish", 1.0),
            ("like", 2.0),
            ("comment", 2.0),
            ("share", 3.0),
            ("follow", 4.0),
            ("skip", -0.5),
            ("not_interested", -4.0),
            ("report", -10.0),
        ];
        ValueWeights(weights.into_iter().map(|(head, w)| (head.to_string(), w)).collect())
    }
}

/// One head's share of a value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeadValue {
    /// The head (action) name.
    pub head: String,
    /// The predicted probability of the action.
    pub probability: f32,
    /// The action's weight.
    pub weight: f32,
}

/// A candidate's value and what it is made of.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Value {
    /// `Σ probability × weight`.
    pub score: f32,
    /// Every head, in the model's order.
    pub heads: Vec<HeadValue>,
}

impl ValueWeights {
    /// The weight of each of `heads`, in their order (0 for a head without one): what scoring
    /// many candidates looks up once.
    pub fn in_order(&self, heads: &[String]) -> Vec<f32> {
        heads.iter().map(|head| self.0.get(head).copied().unwrap_or(0.0)).collect()
    }

    /// The value of one candidate whose head probabilities are `probabilities` (in the order of
    /// `heads`).
    pub fn value(&self, heads: &[String], probabilities: &[f32]) -> Value {
        let heads: Vec<HeadValue> = heads
            .iter()
            .zip(probabilities)
            .zip(self.in_order(heads))
            .map(|((head, &probability), weight)| HeadValue { head: head.clone(), probability, weight })
            .collect();
        Value { score: heads.iter().map(|h| h.probability * h.weight).sum(), heads }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_actions_sink_a_likely_watch() {
        let heads: Vec<String> = ["effective_play", "like", "report", "unknown"].map(String::from).to_vec();
        let weights = ValueWeights::default();
        // A: often watched and liked, sometimes reported. B: watched less, never reported.
        let a = weights.value(&heads, &[0.9, 0.3, 0.1, 0.5]);
        let b = weights.value(&heads, &[0.6, 0.2, 0.0, 0.5]);
        assert!((a.score - (0.9 + 0.6 - 1.0)).abs() < 1e-6, "{a:?}");
        assert!((b.score - (0.6 + 0.4)).abs() < 1e-6, "{b:?}");
        assert!(b.score > a.score, "the report risk outweighs A's extra engagement");
        assert_eq!(a.heads[3].weight, 0.0, "a head without a weight is worth nothing");
        // Without the report weight A would win.
        let mut lenient = weights.clone();
        lenient.0.insert("report".into(), 0.0);
        assert!(lenient.value(&heads, &[0.9, 0.3, 0.1, 0.5]).score > b.score);
    }
}
