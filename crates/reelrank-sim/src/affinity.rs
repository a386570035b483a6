//! The ground-truth affinity of a user for an item: the one quantity behind all simulated behaviour.
//! The formula is spelled out in the crate documentation; the constants live here.

use crate::catalog::Entry;
use crate::users::Viewer;
use crate::vocab::{CATEGORY_COUNT, ENGLISH, TOPICS};

/// Most topics a mixture holds (users hold 1 to 4 interests, items 1 or 2 topics).
pub(crate) const MAX_TOPICS: usize = 4;

const BIAS: f64 = -5.0;
const TOPIC: f64 = 4.0;
const CATEGORY: f64 = 1.5;
const QUALITY: f64 = 3.0;
const LANGUAGE: f64 = 1.0;
/// Language score of an English item for a viewer of another language.
const ENGLISH_FOR_OTHERS: f64 = 0.3;

/// A sparse mixture of latent topics whose weights sum to 1.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct TopicMix {
    len: u8,
    topics: [u8; MAX_TOPICS],
    weights: [f32; MAX_TOPICS],
}

impl TopicMix {
    /// From distinct topics with positive weights (at most [`MAX_TOPICS`]), normalised to sum 1.
    pub(crate) fn new(pairs: impl IntoIterator<Item = (u8, f32)>) -> TopicMix {
        let mut mix = TopicMix::default();
        for (topic, weight) in pairs {
            let i = usize::from(mix.len);
            debug_assert!(i < MAX_TOPICS && !mix.contains(topic));
            mix.topics[i] = topic;
            mix.weights[i] = weight;
            mix.len += 1;
        }
        let total: f32 = mix.weights.iter().sum();
        if total > 0.0 {
            mix.weights.iter_mut().for_each(|w| *w /= total);
        }
        mix
    }

    /// The `(topic, weight)` pairs.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u8, f32)> + '_ {
        let n = usize::from(self.len);
        self.topics[..n].iter().copied().zip(self.weights[..n].iter().copied())
    }

    pub(crate) fn contains(&self, topic: u8) -> bool {
        self.iter().any(|(t, _)| t == topic)
    }

    /// The weight of `topic` (0 when absent).
    pub(crate) fn weight(&self, topic: u8) -> f32 {
        self.iter().find(|&(t, _)| t == topic).map_or(0.0, |(_, w)| w)
    }

    /// The heaviest topic.
    pub(crate) fn primary(&self) -> u8 {
        self.iter().fold((0, f32::MIN), |best, p| if p.1 > best.1 { p } else { best }).0
    }
}

/// A user's tastes on one day, laid out to score many items quickly.
pub(crate) struct Taste {
    /// Interest weight per topic divided by the largest one.
    topic: [f32; TOPICS.len()],
    category: [f32; CATEGORY_COUNT],
    language: u8,
}

impl Taste {
    pub(crate) fn new(viewer: &Viewer, interests: &TopicMix) -> Taste {
        let max = interests.iter().map(|(_, w)| w).fold(0.0f32, f32::max);
        let mut topic = [0.0; TOPICS.len()];
        if max > 0.0 {
            for (t, w) in interests.iter() {
                topic[usize::from(t)] = w / max;
            }
        }
        Taste { topic, category: viewer.category_pref, language: viewer.language }
    }

    /// The ground-truth affinity in (0, 1) for an item.
    pub(crate) fn affinity(&self, entry: &Entry) -> f64 {
        1.0 / (1.0 + (-self.logit(entry)).exp())
    }

    /// `z` of the formula: the affinity before the logistic function, in the same order.
    pub(crate) fn logit(&self, entry: &Entry) -> f64 {
        let topic: f32 = entry.topics.iter().map(|(t, v)| self.topic[usize::from(t)] * v).sum();
        let category = self.category[usize::from(entry.category)];
        let language = if self.language == entry.language {
            1.0
        } else if entry.language == ENGLISH {
            ENGLISH_FOR_OTHERS
        } else {
            0.0
        };
        BIAS + TOPIC * f64::from(topic)
            + CATEGORY * f64::from(category)
            + QUALITY * f64::from(entry.quality)
            + LANGUAGE * language
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::fixture;

    #[test]
    fn mixtures_normalise() {
        let mix = TopicMix::new([(3, 3.0), (5, 1.0)]);
        assert_eq!(mix.iter().count(), 2);
        assert!((mix.weight(3) - 0.75).abs() < 1e-6);
        assert_eq!(mix.weight(4), 0.0);
        assert_eq!(mix.primary(), 3);
    }

    #[test]
    fn logit_follows_the_documented_formula() {
        let (sim, _) = fixture();
        let viewer = &sim.audience.viewers[0];
        let mut entry = sim.catalog.entries[0].clone();
        let interests = TopicMix::new([(3, 3.0), (5, 1.0)]);
        let taste = Taste::new(viewer, &interests);
        let base = BIAS
            + CATEGORY * f64::from(viewer.category_pref[usize::from(entry.category)])
            + QUALITY * f64::from(entry.quality)
            + LANGUAGE
                * if entry.language == viewer.language {
                    1.0
                } else if entry.language == ENGLISH {
                    0.3
                } else {
                    0.0
                };
        for (topics, topic_term) in [
            (TopicMix::new([(3, 1.0)]), 1.0),
            (TopicMix::new([(5, 1.0)]), 1.0 / 3.0),
            (TopicMix::new([(5, 0.5), (3, 0.5)]), 2.0 / 3.0),
            (TopicMix::new([(7, 1.0)]), 0.0),
        ] {
            entry.topics = topics;
            assert!((taste.logit(&entry) - (base + TOPIC * topic_term)).abs() < 1e-5);
            let affinity = 1.0 / (1.0 + (-(base + TOPIC * topic_term)).exp());
            assert!((taste.affinity(&entry) - affinity).abs() < 1e-6);
        }
    }
}
