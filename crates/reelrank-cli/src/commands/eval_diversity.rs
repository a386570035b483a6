//! `reelrank eval diversity`: what re-ranking buys and costs on a simulated platform. Both models
//! are trained on every day but the last; then each user with a positive on the last day gets a
//! top-20 feed from the serving pipeline as of that morning, with re-ranking off, with caps and
//! MMR only, and with caps, MMR and exploration (the default). Reported: Recall@20 against the
//! last day's positives, intra-list diversity (mean pairwise `1 − cosine` of the items' vectors),
//! category entropy and distinct creators of the top 20.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;

use reelrank_core::{Event, Timestamp};
use reelrank_eval::{tower_inputs, ImpressionSet, Rating, RetrievalTask, Split};
use reelrank_features::{join_impressions, PositiveRule, UserSchema};
use reelrank_models::{TwoTower, TwoTowerConfig, WideDeep, WideDeepConfig};
use reelrank_serving::{
    recommend, Activity, Behaviour, Catalog, DiversityConfig, ItemIndex, Models, PipelineConfig, Ranker,
    Request, Retrieval,
};
use serde::Serialize;

use crate::settings::Settings;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    sim: super::eval_simulated::SimulationArgs,
    /// Epochs of the two-tower model.
    #[arg(long, default_value_t = 4)]
    retrieval_epochs: usize,
    /// Epochs of the Wide&Deep model.
    #[arg(long, default_value_t = 2)]
    ranking_epochs: usize,
    /// Print one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

/// One re-ranking setting's figures over the test users.
#[derive(Debug, Serialize)]
struct Row {
    reranking: &'static str,
    recall_20: f64,
    intra_list_diversity: f64,
    category_entropy_bits: f64,
    distinct_creators: f64,
}

pub fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let sim = args.sim.simulation()?;
    let last = sim.config().days - 1;
    let morning = Timestamp(sim.config().start.millis() + i64::from(last) * Timestamp::DAY_MS);
    let (mut history, mut test_day): (Vec<Event>, Vec<Event>) = (Vec::new(), Vec::new());
    let _ = sim.run(|day, events| {
        if day < last { &mut history } else { &mut test_day }.extend_from_slice(events);
        Ok::<_, Infallible>(())
    });
    let catalog = Catalog::new(sim.items().to_vec());
    let models = train(settings, &args, &sim, &catalog, &history, morning)?;
    let mut activity = Activity::new(catalog.len(), settings.serving.heat_half_life_hours);
    for event in &history {
        activity.record(&catalog, event);
    }
    activity.refresh_trending(&catalog);

    let rule = PositiveRule::default();
    let mut relevant: HashMap<&str, HashSet<ItemIndex>> = HashMap::new();
    for event in &test_day {
        let Some(index) = catalog.index(&event.item_id) else { continue };
        if rule.is_positive(event, catalog.item(index).duration_s) {
            relevant.entry(event.user_id.as_str()).or_default().insert(index);
        }
    }
    let users: HashMap<&str, &reelrank_core::User> =
        sim.users().iter().map(|u| (u.user_id.as_str(), u)).collect();
    let mut test_users: Vec<&str> = relevant.keys().copied().collect();
    test_users.sort_unstable();

    let base = &settings.serving.pipeline;
    let settings_of = |diversity: DiversityConfig| PipelineConfig { diversity, ..base.clone() };
    let variants = [
        ("off", settings_of(DiversityConfig { enabled: false, ..base.diversity.clone() })),
        ("caps + MMR", settings_of(DiversityConfig { exploration_share: 0.0, ..base.diversity.clone() })),
        ("caps + MMR + exploration", settings_of(base.diversity.clone())),
    ];
    let retrieval = models.retrieval.as_deref().expect("trained above");
    let vector = |i: ItemIndex| retrieval.vector(catalog.key(i));
    let mut rows = Vec::new();
    for (name, pipeline) in &variants {
        let mut sums = [0.0f64; 4];
        for (n, user_id) in test_users.iter().enumerate() {
            let request_id = format!("eval{n}");
            let request = Request {
                request_id: &request_id,
                user_id,
                user: users.get(user_id).copied(),
                n: 20,
                exclude: &[],
                context: None,
                now: morning,
            };
            let feed: Vec<ItemIndex> =
                recommend(&catalog, Behaviour::of(&activity, user_id), &models, pipeline, &request)
                    .items
                    .iter()
                    .map(|r| r.index)
                    .collect();
            let hits = feed.iter().filter(|i| relevant[user_id].contains(i)).count();
            sums[0] += hits as f64 / relevant[user_id].len().min(20) as f64;
            let vectors: Vec<Vec<f32>> = feed.iter().filter_map(|&i| vector(i)).collect();
            sums[1] += intra_list_diversity(&vectors);
            sums[2] += entropy(feed.iter().map(|&i| catalog.item(i).category.as_str()));
            let creators: HashSet<_> =
                feed.iter().filter_map(|&i| catalog.item(i).creator_id.as_deref()).collect();
            sums[3] += creators.len() as f64;
        }
        let users = test_users.len().max(1) as f64;
        rows.push(Row {
            reranking: name,
            recall_20: sums[0] / users,
            intra_list_diversity: sums[1] / users,
            category_entropy_bits: sums[2] / users,
            distinct_creators: sums[3] / users,
        });
    }
    println!("top 20 of {} users with a positive on the last day", test_users.len());
    println!(
        "{:<26} {:>9} {:>9} {:>16} {:>10}",
        "re-ranking", "Recall@20", "ILD", "category entropy", "creators"
    );
    for row in &rows {
        println!(
            "{:<26} {:>9.4} {:>9.4} {:>16.3} {:>10.2}",
            row.reranking,
            row.recall_20,
            row.intra_list_diversity,
            row.category_entropy_bits,
            row.distinct_creators
        );
    }
    let off = rows[0].recall_20.max(f64::EPSILON);
    for row in &rows[1..] {
        println!(
            "{}: Recall@20 {:+.1} % of re-ranking off",
            row.reranking,
            (row.recall_20 / off - 1.0) * 100.0
        );
    }
    if args.json {
        println!("{}", serde_json::json!({"users": test_users.len(), "rows": rows}));
    }
    Ok(())
}

/// Both models trained on `history` (positives for the two-tower model, joined impressions for
/// the Wide&Deep model), as of `now`.
fn train(
    settings: &Settings,
    args: &Args,
    sim: &reelrank_sim::Simulation,
    catalog: &Catalog,
    history: &[Event],
    now: Timestamp,
) -> anyhow::Result<Models> {
    let rule = PositiveRule::default();
    let positives: Vec<Rating> = history
        .iter()
        .filter(|e| {
            catalog.index(&e.item_id).is_some_and(|i| rule.is_positive(e, catalog.item(i).duration_s))
        })
        .map(Rating::from_positive_event)
        .collect();
    let task = RetrievalTask::new(&Split { train: positives, test: Vec::new(), retrieval_test: Vec::new() });
    let inputs = tower_inputs(&task.data, sim.items(), sim.users(), now);
    let config = TwoTowerConfig { max_epochs: args.retrieval_epochs, ..settings.retrieval.two_tower.clone() };
    let tower = TwoTower::fit(&inputs, &task.data.positives, &config, |_, _, _| true);
    let schema = UserSchema::from_users(sim.users());
    let retrieval = Retrieval::build(tower, schema, sim.items(), &settings.retrieval.index, now)?;

    let set = ImpressionSet::new(
        join_impressions(history),
        sim.items(),
        sim.users(),
        now,
        &settings.ranking.impressions,
    );
    let config = WideDeepConfig { max_epochs: args.ranking_epochs, ..settings.ranking.wide_deep.clone() };
    let model = WideDeep::fit(&set.examples, &set.schema, &config, |_, _, _| true);
    let ranker = Ranker::new(model, set.features, settings.ranking.value.clone(), catalog, history);
    Ok(Models {
        version: "eval".into(),
        retrieval: Some(Arc::new(retrieval)),
        ranker: Some(Arc::new(ranker)),
    })
}

/// Mean `1 − cosine` over pairs of unit vectors.
fn intra_list_diversity(vectors: &[Vec<f32>]) -> f64 {
    let (mut sum, mut pairs) = (0.0, 0usize);
    for (i, a) in vectors.iter().enumerate() {
        for b in &vectors[i + 1..] {
            sum += 1.0 - f64::from(a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>());
            pairs += 1;
        }
    }
    if pairs == 0 {
        0.0
    } else {
        sum / pairs as f64
    }
}

/// Shannon entropy, in bits, of the values' distribution.
fn entropy<'a>(values: impl Iterator<Item = &'a str>) -> f64 {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for value in values {
        *counts.entry(value).or_default() += 1;
    }
    let total: usize = counts.values().sum();
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / total as f64;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diversity_measures_match_hand_values() {
        assert_eq!(entropy(["a", "a"].into_iter()), 0.0);
        assert!((entropy(["a", "b", "c", "d"].into_iter()) - 2.0).abs() < 1e-12);
        let (x, y) = (vec![1.0, 0.0], vec![0.0, 1.0]);
        assert!((intra_list_diversity(&[x.clone(), x.clone()]) - 0.0).abs() < 1e-12);
        assert!((intra_list_diversity(&[x, y]) - 1.0).abs() < 1e-12);
    }
}
