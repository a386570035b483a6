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

    /// The values of candidates whose head probabilities are `probabilities` (`[candidates ×
    /// heads]`, heads in the order of `heads`): every score at once, and each candidate's
    /// breakdown only when asked for, since a feed explains a few of the hundreds it scores.
    pub fn values<'a>(&self, heads: &'a [String], probabilities: Vec<f32>) -> Values<'a> {
        let weights = self.in_order(heads);
        let scores = probabilities
            .chunks_exact(heads.len().max(1))
            .map(|p| p.iter().zip(&weights).map(|(p, w)| p * w).sum())
            .collect();
        Values { heads, weights, probabilities, scores }
    }
}

/// Many candidates' values; see [`ValueWeights::values`].
#[derive(Debug, Clone)]
pub struct Values<'a> {
    heads: &'a [String],
    weights: Vec<f32>,
    probabilities: Vec<f32>,
    /// Each candidate's `Σ probability × weight`, in order.
    pub scores: Vec<f32>,
}

impl Values<'_> {
    /// Candidate `i`'s value with each head's share.
    pub fn value(&self, i: usize) -> Value {
        let probabilities = &self.probabilities[i * self.heads.len()..(i + 1) * self.heads.len()];
        let heads = (self.heads.iter().zip(probabilities).zip(&self.weights))
            .map(|((head, &probability), &weight)| HeadValue { head: head.clone(), probability, weight })
            .collect();
        Value { score: self.scores[i], heads }
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
        let values = weights.values(&heads, vec![0.9, 0.3, 0.1, 0.5, 0.6, 0.2, 0.0, 0.5]);
        let (a, b) = (values.value(0), values.value(1));
        assert!((a.score - (0.9 + 0.6 - 1.0)).abs() < 1e-6, "{a:?}");
        assert!((b.score - (0.6 + 0.4)).abs() < 1e-6, "{b:?}");
        assert!(b.score > a.score, "the report risk outweighs A's extra engagement");
        assert_eq!(a.heads[3].weight, 0.0, "a head without a weight is worth nothing");
        // Without the report weight A would win.
        let mut lenient = weights.clone();
        lenient.0.insert("report".into(), 0.0);
        assert!(lenient.values(&heads, vec![0.9, 0.3, 0.1, 0.5]).scores[0] > b.score);
    }
}
