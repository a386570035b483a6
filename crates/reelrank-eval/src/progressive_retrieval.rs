//! Progressive evaluation of the two-tower model learning online (see [`crate::progressive`] for
//! the ranking model's). Day by day: at the start of the day both models retrieve each active
//! user's top 20 from the catalog known so far, scored against the positives the user then has
//! that day (Recall@20); then the online copy learns from that day's positives in time order,
//! each with the user's history as it was just before it, moving the embedding rows only (the
//! dense layers stay still, as a server learning online keeps them). The frozen model is never
//! updated.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use reelrank_core::{Item, Timestamp, User};
use reelrank_features::{item_bags, item_id_key, Bag, UserSchema};
use reelrank_models::{FrequencyEstimator, TowerExample, TwoTower, TwoTowerRetriever};
use serde::Serialize;

use crate::retrieval::{RetrievalReport, RetrievalTask};
use crate::split::{Rating, Split};
use crate::towers::tower_inputs;

/// Both models' retrieval on one day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetrievalDay {
    /// Days since the first.
    pub day: u32,
    /// The model as trained, never updated.
    pub frozen: RetrievalReport,
    /// The same model having learned online from every earlier day.
    pub online: RetrievalReport,
}

/// The log and catalog a progressive retrieval evaluation replays.
pub struct RetrievalLog<'a> {
    /// Every positive with its day (days since `start`), in time order.
    pub positives: &'a [(u32, Rating)],
    /// The catalog, including items published later.
    pub items: &'a [Item],
    /// The users' records.
    pub users: &'a [User],
    /// Midnight of day 0.
    pub start: Timestamp,
}

/// Evaluates `frozen` and a copy of it learning online on days `days` of `log` (see the module
/// documentation), learning in steps of up to `batch_size` positives; returns each day's figures
/// and the online model as it ends.
pub fn progressive_retrieval(
    log: &RetrievalLog<'_>,
    frozen: &TwoTower,
    days: std::ops::Range<u32>,
    batch_size: usize,
) -> (Vec<RetrievalDay>, TwoTower) {
    let schema = UserSchema::from_users(log.users);
    let users: HashMap<&str, &User> = log.users.iter().map(|u| (u.user_id.as_str(), u)).collect();
    let number: HashMap<&str, u32> =
        log.items.iter().enumerate().map(|(i, item)| (item.item_id.as_str(), i as u32)).collect();
    let keys: Vec<u64> = log.items.iter().map(|i| item_id_key(&i.item_id)).collect();
    let by_key: HashMap<u64, u32> = keys.iter().enumerate().map(|(i, &key)| (key, i as u32)).collect();
    let batch_size = batch_size.max(1);
    let uniform = frozen.config().uniform_negatives;
    let mut frequency = FrequencyEstimator::new(log.items.len(), 0.05);
    let mut histories: HashMap<&str, Vec<u64>> = HashMap::new();
    let first = log.positives.partition_point(|(d, _)| *d < days.start);
    for batch in log.positives[..first].chunks(batch_size) {
        observe(&mut frequency, &number, batch);
    }
    for (_, rating) in &log.positives[..first] {
        histories.entry(&rating.user).or_default().push(item_id_key(&rating.item));
    }
    let mut online = frozen.clone();
    let mut rng = Pcg64Mcg::seed_from_u64(frozen.config().seed);
    let mut reports = Vec::new();
    for day in days {
        let day_start = Timestamp(log.start.millis() + i64::from(day) * Timestamp::DAY_MS);
        let (begin, end) = (
            log.positives.partition_point(|(d, _)| *d < day),
            log.positives.partition_point(|(d, _)| *d <= day),
        );
        let ratings = |range: std::ops::Range<usize>| -> Vec<Rating> {
            log.positives[range].iter().map(|(_, r)| r.clone()).collect()
        };
        let task = RetrievalTask::new(&Split {
            train: ratings(0..begin),
            test: Vec::new(),
            retrieval_test: ratings(begin..end),
        });
        let inputs = tower_inputs(&task.data, log.items, log.users, day_start);
        reports.push(RetrievalDay {
            day,
            frozen: task.evaluate(&TwoTowerRetriever::new(frozen, &inputs)),
            online: task.evaluate(&TwoTowerRetriever::new(&online, &inputs)),
        });

        // The items published by the day's start, their bags as of then.
        let published: Vec<u32> = (0..log.items.len() as u32)
            .filter(|&i| log.items[i as usize].published_at.is_none_or(|p| p <= day_start))
            .collect();
        let bags: Vec<Vec<Bag>> = log.items.iter().map(|item| item_bags(item, day_start)).collect();
        for batch in log.positives[begin..end].chunks(batch_size) {
            observe(&mut frequency, &number, batch);
            let user_slots: Vec<Vec<Bag>> = batch
                .iter()
                .map(|(_, r)| match users.get(r.user.as_str()) {
                    Some(user) => schema.bags(user),
                    None => schema.anonymous_bags(&r.user),
                })
                .collect();
            let mut before = Vec::with_capacity(batch.len());
            for (_, rating) in batch {
                let history = histories.entry(&rating.user).or_default();
                before.push(history[history.len().saturating_sub(HISTORY_KEPT)..].to_vec());
                history.push(item_id_key(&rating.item));
            }
            let examples: Vec<TowerExample<'_>> = batch
                .iter()
                .zip(&user_slots)
                .zip(&before)
                .filter_map(|(((_, rating), slots), history)| {
                    let item = *number.get(rating.item.as_str())?;
                    Some(TowerExample {
                        user_slots: slots,
                        context: &rating.context,
                        history,
                        item_key: keys[item as usize],
                        item: &bags[item as usize],
                    })
                })
                .collect();
            let negatives: Vec<(u64, &[Bag])> = (0..uniform)
                .filter(|_| !published.is_empty())
                .map(|_| {
                    let i = published[rng.random_range(0..published.len())] as usize;
                    (keys[i], bags[i].as_slice())
                })
                .collect();
            let now = batch.last().map_or(day_start.millis(), |(_, r)| r.timestamp * 1000);
            let log_q = |key: u64| {
                by_key.get(&key).map_or(0.0, |&i| frequency.log_probability_with_uniform(i, uniform))
            };
            online.learn(&examples, &negatives, log_q, now, false);
        }
    }
    (reports, online)
}

/// Most earlier positives an example's history carries (the towers read fewer).
const HISTORY_KEPT: usize = 100;

/// Counts one batch's items in the frequency estimate.
fn observe(frequency: &mut FrequencyEstimator, number: &HashMap<&str, u32>, batch: &[(u32, Rating)]) {
    let items: Vec<u32> = batch.iter().filter_map(|(_, r)| number.get(r.item.as_str()).copied()).collect();
    frequency.observe_batch(&items);
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use reelrank_features::PositiveRule;
    use reelrank_models::TwoTowerConfig;
    use reelrank_sim::{SimConfig, Simulation};

    use super::*;

    #[test]
    fn the_online_copy_starts_as_the_frozen_model_and_learns_from_each_day() {
        let sim = Simulation::new(SimConfig {
            users: 200,
            items: 800,
            days: 5,
            drift: 0.5,
            catalog_at_start: 0.6,
            ..SimConfig::default()
        });
        let rule = PositiveRule::default();
        let durations: HashMap<&str, Option<f64>> =
            sim.items().iter().map(|i| (i.item_id.as_str(), i.duration_s)).collect();
        let mut positives = Vec::new();
        sim.run(|day, events| {
            for event in events.iter().filter(|e| rule.is_positive(e, durations[e.item_id.as_str()])) {
                positives.push((day, Rating::from_positive_event(event)));
            }
            Ok::<_, Infallible>(())
        })
        .unwrap();
        let log = RetrievalLog {
            positives: &positives,
            items: sim.items(),
            users: sim.users(),
            start: sim.config().start,
        };
        let first = positives.partition_point(|(d, _)| *d < 2);
        let train: Vec<Rating> = positives[..first].iter().map(|(_, r)| r.clone()).collect();
        let task = RetrievalTask::new(&Split { train, test: Vec::new(), retrieval_test: Vec::new() });
        let inputs = tower_inputs(
            &task.data,
            sim.items(),
            sim.users(),
            Timestamp(sim.config().start.millis() + 2 * Timestamp::DAY_MS),
        );
        let config = TwoTowerConfig { max_epochs: 3, ..TwoTowerConfig::default() };
        let frozen = TwoTower::fit(&inputs, &task.data.positives, &config, |_, _, _| true);
        let (days, online) = progressive_retrieval(&log, &frozen, 2..5, 256);

        assert_eq!(days.iter().map(|d| d.day).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(days[0].frozen, days[0].online, "nothing is learned before the first day is scored");
        assert!(days[1..].iter().all(|d| d.frozen != d.online), "the online copy learned each day");
        assert!(days.iter().all(|d| d.frozen.users > 0));
        let user = inputs.user_slots[0].clone();
        assert_ne!(frozen.user_vector(&user, &[], &[]), online.user_vector(&user, &[], &[]));
    }
}
