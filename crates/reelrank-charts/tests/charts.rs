//! Charts on a simulated platform: against an independent recomputation from the raw events,
//! and under a bot farm's attack.

use std::collections::{HashMap, HashSet};

use reelrank_charts::{ChartConfig, ChartQuery, ChartRow, Charts, Day, GuardConfig, Period, Span};
use reelrank_core::{Category, Event, EventKind, Item, Timestamp};
use reelrank_sim::{BotFarm, SimConfig, Simulation};

fn simulate(days: u32) -> (Simulation, Vec<Event>) {
    // 2026-01-05, the simulator's first day, is a Monday.
    let sim = Simulation::new(SimConfig { users: 800, items: 3000, days, seed: 11, ..SimConfig::default() });
    let events = sim.all_events();
    (sim, events)
}

fn charts_of(config: ChartConfig, items: &HashMap<&str, &Item>, events: &[Event]) -> Charts {
    let mut charts = Charts::new(config);
    for event in events {
        charts.record(event, Some(items[event.item_id.as_str()]));
    }
    charts
}

fn by_id(sim: &Simulation) -> HashMap<&str, &Item> {
    sim.items().iter().map(|item| (item.item_id.as_str(), item)).collect()
}

fn query(category: Option<Category>, period: Period) -> ChartQuery {
    ChartQuery { category, period, limit: usize::MAX }
}

/// The charts' rules written out again plainly from their documentation, over the whole log for
/// every chart asked.
struct Naive<'a> {
    items: &'a HashMap<&'a str, &'a Item>,
    /// Per (item, day): effective plays, likes, comments, shares.
    figures: HashMap<(&'a str, i64), [u64; 4]>,
    first_day: HashMap<&'a str, i64>,
}

impl<'a> Naive<'a> {
    fn new(items: &'a HashMap<&'a str, &'a Item>, events: &'a [Event]) -> Naive<'a> {
        let mut seen = HashSet::new();
        let (mut figures, mut first_day) = (HashMap::new(), HashMap::<&str, i64>::new());
        for event in events {
            let item = items[event.item_id.as_str()];
            let threshold_ms = item.duration_s.map_or(360_000.0, |d| (0.3 * d * 1000.0).min(360_000.0));
            let slot = match event.kind {
                EventKind::Finish => 0,
                EventKind::Watch if event.value.unwrap_or(0.0) >= threshold_ms => 0,
                EventKind::Like => 1,
                EventKind::Comment => 2,
                EventKind::Share => 3,
                _ => continue,
            };
            let day = event.ts.millis().div_euclid(Timestamp::DAY_MS);
            let first = first_day.entry(item.item_id.as_str()).or_insert(day);
            *first = (*first).min(day);
            if seen.insert((event.user_id.as_str(), item.item_id.as_str(), day, slot)) {
                figures.entry((item.item_id.as_str(), day)).or_insert([0; 4])[slot] += 1;
            }
        }
        Naive { items, figures, first_day }
    }

    /// Items of `category` with an effective play from day `from` to `to`, best first.
    fn ranked(&self, category: Option<&Category>, from: i64, to: i64) -> Vec<(&'a str, [u64; 4])> {
        let mut sums: HashMap<&str, [u64; 4]> = HashMap::new();
        for (&(item, day), figures) in &self.figures {
            if (from..=to).contains(&day) && category.is_none_or(|c| self.items[item].category == *c) {
                let sum = sums.entry(item).or_insert([0; 4]);
                (0..4).for_each(|k| sum[k] += figures[k]);
            }
        }
        let mut ranked: Vec<(&str, [u64; 4])> = sums.into_iter().filter(|(_, f)| f[0] > 0).collect();
        ranked.sort_by(|a, b| b.1[0].cmp(&a.1[0]).then(a.0.cmp(b.0)));
        ranked
    }

    fn chart(&self, category: Option<&Category>, from: i64, to: i64) -> Vec<ChartRow> {
        let ranked = self.ranked(category, from, to);
        let length = to - from + 1;
        let before = self.ranked(category, from - length, from - 1);
        let total: u64 = ranked.iter().map(|(_, f)| f[0]).sum();
        let engagement = |f: &[u64; 4]| f[1] as f64 + 2.0 * f[2] as f64 + 3.0 * f[3] as f64;
        let most_engagement = ranked.iter().map(|(_, f)| engagement(f)).fold(0.0, f64::max);
        ranked
            .iter()
            .enumerate()
            .map(|(place, (item, f))| {
                let rank = place as u32 + 1;
                let previous = before.iter().position(|(other, _)| other == item);
                let previous_plays = previous.map_or(0, |p| before[p].1[0]);
                let plays = f[0] as f64;
                let heat = 100.0
                    * (0.5 * plays / ranked[0].1[0] as f64
                        + 0.3 * if most_engagement > 0.0 { engagement(f) / most_engagement } else { 0.0 }
                        + 0.2 * plays / (plays + previous_plays as f64));
                let meta = self.items[item];
                let online_from = meta
                    .published_at
                    .map_or(self.first_day[item], |t| t.millis().div_euclid(Timestamp::DAY_MS));
                let previous_rank = previous.map(|p| p as u32 + 1);
                ChartRow {
                    rank,
                    change: match previous_rank {
                        None => "New".into(),
                        Some(p) if p > rank => format!("↑{}", p - rank),
                        Some(p) if p < rank => format!("↓{}", rank - p),
                        Some(_) => "=".into(),
                    },
                    previous_rank,
                    item_id: item.to_string(),
                    title: meta.title.clone(),
                    category: meta.category.as_str().to_owned(),
                    share: plays / total as f64,
                    heat,
                    effective_plays: f[0],
                    likes: f[1],
                    comments: f[2],
                    shares: f[3],
                    days_online: ((to - online_from + 1).max(1)) as i32,
                    regions: meta.regions.clone(),
                }
            })
            .collect()
    }
}

fn assert_same(got: &[ChartRow], want: &[ChartRow], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: rows");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g.share - w.share).abs() < 1e-12 && (g.heat - w.heat).abs() < 1e-9,
            "{what}: {g:?} != {w:?}"
        );
        let plain = |row: &ChartRow| ChartRow { share: 0.0, heat: 0.0, ..row.clone() };
        assert_eq!(plain(g), plain(w), "{what}");
    }
}

#[test]
fn charts_match_a_naive_recomputation_from_the_raw_events() {
    let (sim, events) = simulate(10);
    let items = by_id(&sim);
    let charts = charts_of(ChartConfig::default(), &items, &events);
    assert!(charts.excluded().is_empty(), "simulated viewers excluded: {:?}", &charts.excluded()[..1]);
    let refusals = charts.refusals();
    assert_eq!((refusals.over_cap, refusals.closed), (0, 0));
    assert!(refusals.repeated > 0, "the log replays items within a day");
    let naive = Naive::new(&items, &events);
    let start = Day::of(sim.config().start);
    let mut categories: Vec<Option<Category>> = Category::KNOWN.iter().cloned().map(Some).collect();
    categories.push(None);
    let (mut changes, mut rows) = (HashSet::new(), 0);
    for category in &categories {
        let periods = [
            Period::Week(start.plus(8)),
            Period::Week(start),
            Period::Day(start.plus(9)),
            Period::Day(start.plus(4)),
            Period::Range(Span::new(start.plus(2), start.plus(6)).unwrap()),
        ];
        for period in periods {
            let span = period.span();
            let got = charts.chart(&query(category.clone(), period), |_| true);
            let want = naive.chart(category.as_ref(), i64::from(span.from.0), i64::from(span.to.0));
            assert_same(&got.rows, &want, &format!("{category:?} {period:?}"));
            assert_eq!(got.effective_plays, want.iter().map(|r| r.effective_plays).sum::<u64>());
            changes.extend(got.rows.iter().map(|r| r.change.chars().next().unwrap()));
            rows += got.rows.len();
        }
    }
    assert!(rows > 1000, "{rows} rows compared");
    assert_eq!(changes, HashSet::from(['↑', '↓', '=', 'N']), "every kind of rank change was compared");
    // A chart leaves out what it is told not to show.
    let week = query(None, Period::Week(start));
    let top = charts.chart(&week, |_| true).rows[0].item_id.clone();
    let without = charts.chart(&week, |id| id != top);
    assert!(without.rows.iter().all(|row| row.item_id != top));
}

#[test]
fn a_bot_farm_with_five_percent_of_plays_moves_its_item_two_places_at_most() {
    let (sim, humans) = simulate(7);
    let items = by_id(&sim);
    let week = query(Some(Category::MicroDrama), Period::Week(Day::of(sim.config().start)));
    let rank_of = |charts: &Charts, item: &str| {
        charts.chart(&week, |_| true).rows.iter().find(|row| row.item_id == item).map(|row| row.rank)
    };
    let honest = charts_of(ChartConfig::default(), &items, &humans);
    let chart = honest.chart(&week, |_| true);
    let target = chart.rows[19].item_id.clone();
    let everyone = honest.chart(&query(None, week.period), |_| true);
    let cover: Vec<String> =
        everyone.rows.iter().map(|r| r.item_id.clone()).filter(|id| *id != target).take(4).collect();

    // Bots' plays are 5 % of all plays: 40 accounts share 5 / 95 of the viewers' plays.
    let human_plays = humans.iter().filter(|e| e.kind == EventKind::Play).count();
    let accounts = 40;
    let plays_per_day = (human_plays as f64 * 5.0 / 95.0 / (accounts * 7) as f64).round() as u32;
    let farm = BotFarm { accounts, target: target.clone(), cover, plays_per_day, seed: 3 };
    let mut attacked = humans.clone();
    for day in 0..7 {
        attacked.extend(farm.events(Timestamp(sim.config().start.millis() + day * Timestamp::DAY_MS)));
    }
    attacked.sort_by_key(|event| event.ts);
    let bot_plays = attacked.iter().filter(|e| e.kind == EventKind::Play).count() - human_plays;
    let bot_share = bot_plays as f64 / (bot_plays + human_plays) as f64;
    assert!((bot_share - 0.05).abs() < 0.002, "bots' share of plays {bot_share}");

    let guarded = charts_of(ChartConfig::default(), &items, &attacked);
    let unguarded_config = ChartConfig {
        guard: GuardConfig { enabled: false, ..GuardConfig::default() },
        ..ChartConfig::default()
    };
    let unguarded = charts_of(unguarded_config, &items, &attacked);
    // Without the duplicate signal the farm's timers give it away days later, and what it
    // contributed until then is taken back.
    let timers_only = ChartConfig {
        guard: GuardConfig { duplicate_accounts: usize::MAX, ..GuardConfig::default() },
        ..ChartConfig::default()
    };
    let timed = charts_of(timers_only, &items, &attacked);
    let ranks = [&honest, &unguarded, &guarded, &timed].map(|charts| rank_of(charts, &target).unwrap());
    println!(
        "target {target}: rank {} honest, {} attacked without the guard, {} with it, {} with timers only; \
         {plays_per_day} plays per bot and day, {:.1} % of plays",
        ranks[0],
        ranks[1],
        ranks[2],
        ranks[3],
        bot_share * 100.0
    );
    assert!(ranks[1] + 2 < ranks[0], "the attack works without the guard: {ranks:?}");
    assert!(ranks[2].abs_diff(ranks[0]) <= 2 && ranks[3].abs_diff(ranks[0]) <= 2, "{ranks:?}");
    let timed_out = timed.excluded();
    assert_eq!(timed_out.len(), accounts);
    assert!(timed_out.iter().all(|a| matches!(a.exclusion.reason, reelrank_charts::Reason::Regular { .. })));
    assert!(timed_out.iter().all(|a| a.exclusion.contributions_retracted > 0));
    let mut signals: Vec<String> = guarded
        .excluded()
        .iter()
        .map(|a| format!("{:?}", a.exclusion.reason).split(' ').next().unwrap().to_owned())
        .collect();
    signals.dedup();
    println!("signals, in the order accounts were excluded: {signals:?}");
    let excluded: HashSet<String> = guarded.excluded().into_iter().map(|a| a.user_id).collect();
    let bots: HashSet<String> = (0..accounts).map(|n| format!("bot{n}")).collect();
    assert_eq!(excluded, bots, "exactly the farm's accounts are excluded");
    assert!(guarded.is_excluded("bot0") && !guarded.is_excluded("u1"));
}
