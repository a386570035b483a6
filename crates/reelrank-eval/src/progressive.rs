//! Progressive evaluation of online learning, the protocol of ByteDance's Monolith: every example
//! is predicted before the model learns from it, and the model learns from an example only once
//! its outcomes could have arrived (`wait_ms` after it was shown). The same model, trained once
//! and frozen, predicts the same examples; the gap between the two is what learning online is
//! worth while interests and the catalog drift.
//!
//! Both models read the same features: the engagement counters and histories of an
//! [`ImpressionSet`] are as of each example's moment, so only the parameters differ.
//!
//! A [`Crash`] replays what the engine does after `kill -9`: the online model is lost, loaded
//! back from its newest snapshot (saved periodically with the model's own persistence), and every
//! example after that snapshot is learned again.

use std::ops::Range;
use std::path::PathBuf;

use reelrank_core::Timestamp;
use reelrank_features::PersistError;
use reelrank_models::{RankingExample, ValueWeights, WideDeep};
use serde::{Deserialize, Serialize};

use crate::impression_set::{ImpressionSet, RankingEvaluation};

/// How the online model learns and how the metrics are windowed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressiveConfig {
    /// Most examples per online step.
    pub batch_size: usize,
    /// How long after an impression its outcomes are taken as complete: learning waits for it.
    pub wait_ms: i64,
    /// Length of the windows the metrics are reported over (aligned to multiples of it since
    /// the epoch, so days start at midnight UTC).
    pub window_ms: i64,
}

impl Default for ProgressiveConfig {
    fn default() -> ProgressiveConfig {
        ProgressiveConfig { batch_size: 256, wait_ms: 5 * 60_000, window_ms: Timestamp::DAY_MS }
    }
}

/// Both models' metrics over one window of examples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProgressiveWindow {
    /// Start of the window.
    pub start: Timestamp,
    /// Examples shown in it.
    pub examples: usize,
    /// The model as trained, never updated.
    pub frozen: RankingEvaluation,
    /// The same model learning from every example once its outcomes are in.
    pub online: RankingEvaluation,
}

/// The online learner killed at `at` (log time) and restarted from its newest snapshot, taken
/// every `snapshot_every_ms` of log time into `dir`.
#[derive(Debug, Clone)]
pub struct Crash {
    /// When it is killed.
    pub at: Timestamp,
    /// How often the online model is saved.
    pub snapshot_every_ms: i64,
    /// Where it is saved.
    pub dir: PathBuf,
}

/// What [`progressive`] returns.
#[derive(Debug, Clone)]
pub struct Progressive {
    /// Each window's metrics.
    pub windows: Vec<ProgressiveWindow>,
    /// The online model as it ends.
    pub model: WideDeep,
    /// The frozen model's probabilities (`[examples × heads]`).
    pub frozen: Vec<f32>,
    /// The online model's, each predicted before it learned from that example.
    pub online: Vec<f32>,
}

/// Predicts `set.examples[from..]` with `frozen` and with a copy of it that learns online (see
/// the module documentation), killed and restarted as `crash` says when there is one; the value
/// model is evaluated with `weights`. Fails only when a snapshot cannot be saved or read back.
pub fn progressive(
    set: &ImpressionSet,
    from: usize,
    frozen: &WideDeep,
    weights: &ValueWeights,
    config: &ProgressiveConfig,
    crash: Option<&Crash>,
) -> Result<Progressive, PersistError> {
    let end = set.examples.len();
    let mut online = frozen.clone();
    let frozen_p = frozen.predict(&set.examples[from..end]);
    let mut online_p = Vec::with_capacity(frozen_p.len());
    let batch = config.batch_size.max(1);
    let (mut learned, mut at) = (from, from);
    // The newest snapshot: when it was taken (log time) and the examples learned by then.
    let mut snapshot: Option<(i64, usize)> = None;
    let mut crashed = false;
    while at < end {
        let now = set.times[at].millis();
        if let Some(crash) = crash.filter(|c| !crashed && now >= c.at.millis()) {
            crashed = true;
            (online, learned) = match snapshot {
                Some((_, learned)) => (WideDeep::load(&crash.dir)?, learned),
                None => (frozen.clone(), from),
            };
        }
        // Every example already predicted whose outcomes are in by now.
        let ready = from + set.times[from..at].partition_point(|t| t.millis() <= now - config.wait_ms);
        for start in (learned..ready).step_by(batch) {
            let stop = (start + batch).min(ready);
            let examples: Vec<&RankingExample> = set.examples[start..stop].iter().collect();
            online.learn(&examples, now, true);
        }
        learned = learned.max(ready);
        if let Some(crash) = crash.filter(|_| !crashed) {
            if snapshot.is_none_or(|(taken, _)| now - taken >= crash.snapshot_every_ms) {
                online.save(&crash.dir)?;
                snapshot = Some((now, learned));
            }
        }
        let next = (at + batch).min(end);
        online_p.extend(online.predict(&set.examples[at..next]));
        at = next;
    }
    let windows = windowed(set, from, (&frozen_p, &online_p), frozen.heads(), weights, config.window_ms);
    Ok(Progressive { windows, model: online, frozen: frozen_p, online: online_p })
}

/// Both models' metrics per window of `window_ms` over `set.examples[from..]`, from their
/// probabilities (`frozen`, `online`: `[examples × heads]` from `from` on).
pub fn windowed(
    set: &ImpressionSet,
    from: usize,
    (frozen, online): (&[f32], &[f32]),
    heads: &[String],
    weights: &ValueWeights,
    window_ms: i64,
) -> Vec<ProgressiveWindow> {
    windows(&set.times, from..from + frozen.len() / heads.len().max(1), window_ms)
        .into_iter()
        .map(|range| {
            let p = |all: &[f32]| -> Vec<f32> {
                all[(range.start - from) * heads.len()..(range.end - from) * heads.len()].to_vec()
            };
            ProgressiveWindow {
                start: Timestamp(set.times[range.start].millis().div_euclid(window_ms) * window_ms),
                examples: range.len(),
                frozen: set.evaluate_predictions(&p(frozen), heads, range.clone(), weights),
                online: set.evaluate_predictions(&p(online), heads, range, weights),
            }
        })
        .collect()
}

/// `range` of the time-ordered `times` cut where a multiple of `window_ms` is crossed.
fn windows(times: &[Timestamp], range: Range<usize>, window_ms: i64) -> Vec<Range<usize>> {
    let window = |i: usize| times[i].millis().div_euclid(window_ms.max(1));
    let mut cuts = Vec::new();
    let mut start = range.start;
    for i in range.clone() {
        if window(i) != window(start) {
            cuts.push(start..i);
            start = i;
        }
    }
    if start < range.end {
        cuts.push(start..range.end);
    }
    cuts
}

#[cfg(test)]
mod tests {
    use reelrank_features::join_impressions;
    use reelrank_models::WideDeepConfig;
    use reelrank_sim::{SimConfig, Simulation};

    use super::*;
    use crate::impression_set::ImpressionConfig;

    #[test]
    fn windows_cut_at_multiples_of_their_length() {
        let times = [5, 9, 10, 19, 35].map(Timestamp);
        assert_eq!(windows(&times, 0..5, 10), [0..2, 2..4, 4..5]);
        assert_eq!(windows(&times, 1..3, 10), [1..2, 2..3]);
    }

    /// Days 0–1 train the model; days 2–5, with interests drifting fast and a third of the
    /// catalog published during the run, are predicted progressively.
    fn drifting() -> (ImpressionSet, usize, WideDeep) {
        let sim = Simulation::new(SimConfig {
            users: 300,
            items: 1500,
            days: 6,
            drift: 0.5,
            catalog_at_start: 0.6,
            ..SimConfig::default()
        });
        let events = sim.all_events();
        let day2 = Timestamp(sim.config().start.millis() + 2 * Timestamp::DAY_MS);
        let set = ImpressionSet::new(
            join_impressions(&events),
            sim.items(),
            sim.users(),
            day2,
            &ImpressionConfig::default(),
        );
        let from = set.shown_before(day2);
        let config = WideDeepConfig { max_epochs: 2, hidden: vec![32], ..WideDeepConfig::default() };
        let frozen = WideDeep::fit(&set.examples[..from], &set.schema, &config, |_, _, _| true);
        (set, from, frozen)
    }

    #[test]
    fn learning_online_beats_the_frozen_model_under_drift_and_never_sees_an_example_first() {
        let (set, from, frozen) = drifting();
        let weights = ValueWeights::default();
        let run = progressive(&set, from, &frozen, &weights, &ProgressiveConfig::default(), None).unwrap();
        let windows = &run.windows;

        assert_eq!(windows.len(), 4, "one window per day");
        assert_eq!(windows.iter().map(|w| w.examples).sum::<usize>(), set.examples.len() - from);
        let first = &windows[0];
        assert_ne!(first.frozen, first.online, "the online model learned during the first day");
        // The first batch is predicted before anything is learned: both models agree on it, and
        // on nothing much later.
        let first_batch = ProgressiveConfig::default().batch_size * frozen.heads().len();
        assert_eq!(run.frozen[..first_batch], run.online[..first_batch]);
        assert_ne!(run.frozen[first_batch * 10..], run.online[first_batch * 10..]);
        let last = &set.examples[set.examples.len() - 1..];
        assert_ne!(run.model.predict(last), frozen.predict(last), "the online model is returned");
        let mean = |auc: fn(&ProgressiveWindow) -> Option<f64>| {
            windows.iter().filter_map(auc).sum::<f64>() / windows.len() as f64
        };
        let (frozen_auc, online_auc) = (mean(|w| w.frozen.value.auc), mean(|w| w.online.value.auc));
        assert!(online_auc > frozen_auc, "online {online_auc:.4} against frozen {frozen_auc:.4}");
    }

    /// Killed on day 3 and restarted from an hourly snapshot, the online model predicts exactly
    /// as before until the crash, differently right after it (it lost up to an hour of learning
    /// and learns it again), and as well as the uninterrupted one over the rest of the run.
    #[test]
    fn a_crashed_learner_resumes_from_its_snapshot_without_a_cliff() {
        let (set, from, frozen) = drifting();
        let (weights, config) = (ValueWeights::default(), ProgressiveConfig::default());
        let whole = progressive(&set, from, &frozen, &weights, &config, None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let at = Timestamp(set.times[from].millis() + Timestamp::DAY_MS + 7 * 3_600_000 + 1_234_567);
        let crash = Crash { at, snapshot_every_ms: 3_600_000, dir: dir.path().to_owned() };
        let crashed = progressive(&set, from, &frozen, &weights, &config, Some(&crash)).unwrap();

        let heads = frozen.heads().len();
        let cut = (set.times.partition_point(|&t| t < at) - from) * heads;
        let after = cut.next_multiple_of(config.batch_size * heads);
        assert_eq!(whole.online[..cut], crashed.online[..cut], "nothing changes before the crash");
        assert_ne!(whole.online[after..], crashed.online[after..], "the model was restored");
        let later = |run: &Progressive| -> f64 {
            let days = &run.windows[1..];
            days.iter().filter_map(|w| w.online.value.auc).sum::<f64>() / days.len() as f64
        };
        let (uninterrupted, resumed) = (later(&whole), later(&crashed));
        assert!((uninterrupted - resumed).abs() < 0.005, "{uninterrupted:.4} against {resumed:.4}");
    }
}
