//! The audience: users with public attributes and latent tastes, and how those tastes drift.

use std::collections::BTreeMap;

use rand::Rng;
use rand_distr::{Distribution, Gamma, LogNormal, Normal};
use rayon::prelude::*;
use reelrank_core::{AttributeValue, Category, User};

use crate::affinity::TopicMix;
use crate::rng::{pick, rng, Cdf, SimRng, Stream};
use crate::vocab::{region_table, CATEGORIES, CATEGORY_COUNT, LANGUAGES, REGIONS, TOPICS};
use crate::SimConfig;

/// Device classes, as written in the `device` attribute and event context.
pub(crate) const DEVICES: [&str; 4] = ["android", "ios", "web", "tv"];
const TV: u8 = 3;
const GENDERS: [&str; 3] = ["female", "male", "other"];
/// Spread of the daily multiplicative random walk of interest weights (log scale).
const WEIGHT_WALK: f64 = 0.25;

/// What the simulator knows about a user: public attributes plus latent tastes.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    /// Index into [`REGIONS`].
    pub region: u8,
    /// Index into [`LANGUAGES`].
    pub language: u8,
    pub age: u8,
    /// Index into [`DEVICES`].
    pub device: u8,
    /// Index into `GENDERS`.
    gender: u8,
    /// Multiplier of the mean number of sessions a day (lognormal, mean 1).
    pub activity: f64,
    /// Liking per category (index into [`CATEGORIES`]), the favourite at 1.
    pub category_pref: [f32; CATEGORY_COUNT],
    /// Interests on day 0; see [`Viewer::interests_on`] for later days.
    interests: TopicMix,
}

impl Viewer {
    /// The latent interests on `day`: day 0's, after one drift step per day. Each step multiplies every
    /// weight by a lognormal factor and, with probability `config.drift`, swaps one interest for a new
    /// topic. Steps draw from their own `(seed, user, day)` stream, so replaying is cheap and exact.
    pub(crate) fn interests_on(&self, config: &SimConfig, user: usize, day: u32) -> TopicMix {
        let walk = Normal::new(0.0, WEIGHT_WALK).expect("valid");
        let mut mix = self.interests;
        for step in 1..=day {
            let mut rng = rng(config.seed, Stream::Drift, user as u64, u64::from(step));
            let mut pairs: Vec<(u8, f32)> =
                mix.iter().map(|(t, w)| (t, w * walk.sample(&mut rng).exp() as f32)).collect();
            if rng.random::<f64>() < config.drift {
                let slot = rng.random_range(0..pairs.len());
                let held: Vec<u8> = pairs.iter().map(|&(t, _)| t).collect();
                if let Some(topic) = self.new_interest(&mut rng, config.topic_count(), &held) {
                    pairs[slot].0 = topic;
                }
            }
            mix = TopicMix::new(pairs);
        }
        mix
    }

    /// A topic the viewer does not hold yet, drawn from the demographic prior.
    fn new_interest(&self, rng: &mut SimRng, topics: usize, held: &[u8]) -> Option<u8> {
        let prior = self.topic_prior(topics);
        (0..20).map(|_| prior.sample(rng).expect("weights are positive") as u8).find(|t| !held.contains(t))
    }

    /// Interests lean by gender and age, which makes the public attributes informative.
    fn topic_prior(&self, topics: usize) -> Cdf {
        let lean = match self.gender {
            0 => 1.0,
            1 => -1.0,
            _ => 0.0,
        };
        let youth = ((30.0 - f32::from(self.age)) / 15.0).clamp(-1.5, 1.5);
        Cdf::new(TOPICS[..topics].iter().map(|t| f64::from(1.2 * t.female * lean + t.youth * youth).exp()))
    }
}

/// The generated users, public and latent.
pub(crate) struct Audience {
    pub users: Vec<User>,
    pub viewers: Vec<Viewer>,
}

impl Audience {
    /// Generates `config.users` users, each from its own random stream.
    pub(crate) fn generate(config: &SimConfig) -> Audience {
        let (users, viewers) = (0..config.users).into_par_iter().map(|u| generate_user(config, u)).unzip();
        Audience { users, viewers }
    }
}

fn generate_user(config: &SimConfig, index: usize) -> (User, Viewer) {
    let mut rng = rng(config.seed, Stream::Users, index as u64, 0);
    let region = pick(&mut rng, &region_table());
    let language = pick(&mut rng, REGIONS[usize::from(region)].languages);
    let age = (13.0f64 + Gamma::new(2.2, 8.0).expect("valid").sample(&mut rng)).min(75.0) as u8;
    let gender = pick(&mut rng, &[(0u8, 0.49), (1, 0.49), (2, 0.02)]);
    let device = pick(&mut rng, &[(0u8, 0.55), (1, 0.30), (2, 0.08), (TV, 0.07)]);
    let occupation = match age {
        0..=18 => "student",
        19..=23 => pick(&mut rng, &[("student", 0.7), ("service", 0.15), ("office", 0.15)]),
        24..=60 => pick(
            &mut rng,
            &[
                ("office", 0.40),
                ("service", 0.20),
                ("self_employed", 0.15),
                ("homemaker", 0.10),
                ("freelancer", 0.10),
                ("unemployed", 0.05),
            ],
        ),
        _ => pick(&mut rng, &[("retired", 0.8), ("self_employed", 0.1), ("homemaker", 0.1)]),
    };
    let activity = LogNormal::new(-0.32, 0.8).expect("valid").sample(&mut rng);
    let taste = Gamma::new(1.0, 1.0).expect("valid");
    let mut category_pref = [0f32; CATEGORY_COUNT];
    for (pref, spec) in category_pref.iter_mut().zip(&CATEGORIES) {
        let long_form = !matches!(spec.category, Category::MicroDrama | Category::ShortVideo);
        let device_lean = match (device, long_form) {
            (TV, true) => 2.5,
            (TV, false) => 0.4,
            _ => 1.0,
        };
        let age_lean = match (age, long_form) {
            (0..=24, false) => 1.5,
            (45.., true) => 1.5,
            _ => 1.0,
        };
        *pref = (taste.sample(&mut rng) * device_lean * age_lean) as f32;
    }
    let best = category_pref.iter().copied().fold(f32::MIN_POSITIVE, f32::max);
    category_pref.iter_mut().for_each(|p| *p /= best);

    let mut viewer = Viewer {
        region,
        language,
        age,
        device,
        gender,
        activity,
        category_pref,
        interests: TopicMix::default(),
    };
    let count = pick(&mut rng, &[(1usize, 0.25), (2, 0.35), (3, 0.25), (4, 0.15)]);
    let weight = Gamma::new(1.5, 1.0).expect("valid");
    let mut held = Vec::with_capacity(count);
    let mut weights = Vec::with_capacity(count);
    for _ in 0..count {
        if let Some(topic) = viewer.new_interest(&mut rng, config.topic_count(), &held) {
            held.push(topic);
            weights.push(weight.sample(&mut rng) as f32 + 0.05);
        }
    }
    viewer.interests = TopicMix::new(held.into_iter().zip(weights));

    let mut user = User::new(format!("u{index}"));
    user.region = Some(REGIONS[usize::from(region)].code.to_owned());
    user.language = Some(LANGUAGES[usize::from(language)].to_owned());
    let birthday_passed = rng.random::<bool>();
    user.birth_year = Some(config.start.year() - i32::from(age) - i32::from(!birthday_passed));
    user.attributes = BTreeMap::from([
        ("age".to_owned(), AttributeValue::Numeric(f64::from(age))),
        ("gender".to_owned(), AttributeValue::Categorical(GENDERS[usize::from(gender)].to_owned())),
        ("occupation".to_owned(), AttributeValue::Categorical(occupation.to_owned())),
        ("device".to_owned(), AttributeValue::Categorical(DEVICES[usize::from(device)].to_owned())),
    ]);
    (user, viewer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::fixture;

    #[test]
    fn users_have_attributes_and_interests() {
        let (sim, _) = fixture();
        for (user, viewer) in sim.users().iter().zip(&sim.audience.viewers) {
            for name in ["age", "gender", "occupation", "device"] {
                assert!(user.attributes.contains_key(name), "{user:?}");
            }
            let age = sim.config.start.year() - user.birth_year.unwrap();
            assert!((13..=76).contains(&age), "{user:?}");
            let n = viewer.interests.iter().count();
            assert!((1..=4).contains(&n), "{n} interests");
            let total: f32 = viewer.interests.iter().map(|(_, w)| w).sum();
            assert!((total - 1.0).abs() < 1e-4);
            assert!(viewer.category_pref.contains(&1.0));
        }
    }

    #[test]
    fn interests_drift() {
        let (sim, _) = fixture();
        let config = &sim.config;
        let topics = |mix: &TopicMix| {
            let mut t: Vec<u8> = mix.iter().map(|(t, _)| t).collect();
            t.sort();
            t
        };
        let mut swapped = 0;
        for (u, viewer) in sim.audience.viewers.iter().enumerate() {
            let first = viewer.interests_on(config, u, 0);
            let last = viewer.interests_on(config, u, config.days - 1);
            assert_eq!(first, viewer.interests);
            swapped += usize::from(topics(&first) != topics(&last));
            if first.iter().count() > 1 {
                assert_ne!(first, last, "weights walk");
            }
        }
        let n = sim.audience.viewers.len();
        // With a swap chance of 0.1 a day, about 4 in 10 users change an interest over 5 steps.
        assert!((n / 5..n * 3 / 5).contains(&swapped), "{swapped} of {n} swapped");

        let still = SimConfig { drift: 0.0, ..config.clone() };
        for (u, viewer) in sim.audience.viewers.iter().enumerate().take(50) {
            assert_eq!(topics(&viewer.interests_on(&still, u, 5)), topics(&viewer.interests));
        }
    }
}
