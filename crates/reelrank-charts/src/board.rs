//! One chart: a period's items ranked by effective plays, with their market share, heat index
//! and rank change against the period before.

use rustc_hash::FxHashMap;
use serde::Deserialize;

use crate::day::Span;
use crate::ledger::{Ledger, Tallies};

/// How the heat index weighs its parts: the `[serving.charts.heat]` settings.
///
/// ```text
/// plays      = effective plays / the chart's most effective plays
/// engagement = (like·likes + comment·comments + share·shares) / the chart's most of the same
/// growth     = effective plays / (effective plays + the previous period's effective plays)
/// heat       = 100 · (plays_weight·plays + engagement_weight·engagement + growth_weight·growth)
///                    / (plays_weight + engagement_weight + growth_weight)
/// ```
///
/// Each part lies in [0, 1], so the index does too (times 100). Growth is 0.5 for an item that
/// held its plays, 1 for one new in the period; a share costs its viewer more than a comment,
/// and a comment more than a like, and they are weighed so.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeatWeights {
    /// Weight of normalised effective plays.
    pub plays_weight: f64,
    /// Weight of normalised engagement.
    pub engagement_weight: f64,
    /// Weight of growth.
    pub growth_weight: f64,
    /// A like's worth in engagement.
    pub like: f64,
    /// A comment's worth in engagement.
    pub comment: f64,
    /// A share's worth in engagement.
    pub share: f64,
}

impl Default for HeatWeights {
    fn default() -> HeatWeights {
        HeatWeights {
            plays_weight: 0.5,
            engagement_weight: 0.3,
            growth_weight: 0.2,
            like: 1.0,
            comment: 2.0,
            share: 3.0,
        }
    }
}

impl HeatWeights {
    fn engagement(&self, tallies: &Tallies) -> f64 {
        self.like * tallies.likes as f64
            + self.comment * tallies.comments as f64
            + self.share * tallies.shares as f64
    }
}

/// An item's place in a chart.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Placing {
    pub item: u32,
    pub rank: u32,
    pub previous_rank: Option<u32>,
    pub tallies: Tallies,
    pub share: f64,
    pub heat: f64,
}

/// How a chart tells its items: which to rank, and their ids (ties rank by id).
pub(crate) struct Items<K, I> {
    pub keep: K,
    pub id: I,
}

/// The items kept with an effective play in `span`, best first: by effective plays, then by id,
/// so ties rank the same every time.
fn ranking<'a, K, I>(ledger: &Ledger, span: Span, items: &Items<K, I>) -> Vec<(u32, Tallies)>
where
    K: Fn(u32) -> bool,
    I: Fn(u32) -> &'a str,
{
    let mut ranked: Vec<(u32, Tallies)> = ledger
        .totals(span.from, span.to, &items.keep)
        .into_iter()
        .filter(|(_, t)| t.effective_plays > 0)
        .collect();
    ranked.sort_unstable_by(|a, b| {
        b.1.effective_plays.cmp(&a.1.effective_plays).then_with(|| (items.id)(a.0).cmp((items.id)(b.0)))
    });
    ranked
}

/// The chart of `span` over `items`, and the total effective plays.
pub(crate) fn placings<'a, K, I>(
    ledger: &Ledger,
    span: Span,
    items: Items<K, I>,
    weights: &HeatWeights,
) -> (Vec<Placing>, u64)
where
    K: Fn(u32) -> bool,
    I: Fn(u32) -> &'a str,
{
    let ranked = ranking(ledger, span, &items);
    let before: FxHashMap<u32, (u32, u64)> = ranking(ledger, span.previous(), &items)
        .into_iter()
        .enumerate()
        .map(|(place, (item, tallies))| (item, (place as u32 + 1, tallies.effective_plays)))
        .collect();
    let total: u64 = ranked.iter().map(|(_, t)| t.effective_plays).sum();
    let most_plays = ranked.first().map_or(1, |(_, t)| t.effective_plays) as f64;
    let most_engagement = ranked.iter().map(|(_, t)| weights.engagement(t)).fold(0.0, f64::max);
    let weight_sum = weights.plays_weight + weights.engagement_weight + weights.growth_weight;
    let placings = ranked
        .into_iter()
        .enumerate()
        .map(|(place, (item, tallies))| {
            let previous = before.get(&item);
            let plays = tallies.effective_plays as f64;
            let engagement =
                if most_engagement > 0.0 { weights.engagement(&tallies) / most_engagement } else { 0.0 };
            let growth = plays / (plays + previous.map_or(0, |p| p.1) as f64);
            let heat = 100.0
                * (weights.plays_weight * plays / most_plays
                    + weights.engagement_weight * engagement
                    + weights.growth_weight * growth)
                / weight_sum;
            Placing {
                item,
                rank: place as u32 + 1,
                previous_rank: previous.map(|p| p.0),
                tallies,
                share: plays / total as f64,
                heat,
            }
        })
        .collect();
    (placings, total)
}

/// A rank change as charts print it: `↑2`, `↓1`, `=`, or `New` for an item not ranked before.
pub fn change(rank: u32, previous_rank: Option<u32>) -> String {
    match previous_rank {
        None => "New".to_owned(),
        Some(before) if before > rank => format!("↑{}", before - rank),
        Some(before) if before < rank => format!("↓{}", rank - before),
        Some(_) => "=".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::day::Day;
    use crate::tally::Tally;

    #[test]
    fn ranks_shares_heat_and_changes() {
        let mut ledger = Ledger::new(30, 400, 100);
        let mut user = 0;
        let mut plays = |ledger: &mut Ledger, item: u32, day: i32, n: u32| {
            for _ in 0..n {
                user += 1;
                ledger.record(user, item, Day(day), Tally::EffectivePlay).unwrap();
            }
        };
        // Day 1: item 1 leads item 2; day 2: item 2 leads, item 3 is new, item 1 gone from view.
        plays(&mut ledger, 1, 1, 5);
        plays(&mut ledger, 2, 1, 3);
        plays(&mut ledger, 2, 2, 6);
        plays(&mut ledger, 3, 2, 2);
        plays(&mut ledger, 1, 2, 1);
        ledger.record(999, 3, Day(2), Tally::Share).unwrap();
        let day2 = Span { from: Day(2), to: Day(2) };
        let names = ["", "i1", "i2", "i3"];
        let all = Items { keep: |_| true, id: |item: u32| names[item as usize] };
        let (chart, total) = placings(&ledger, day2, all, &HeatWeights::default());
        assert_eq!(total, 9);
        let order: Vec<(u32, u32, Option<u32>)> =
            chart.iter().map(|p| (p.item, p.rank, p.previous_rank)).collect();
        assert_eq!(order, vec![(2, 1, Some(2)), (3, 2, None), (1, 3, Some(1))]);
        assert!((chart[0].share - 6.0 / 9.0).abs() < 1e-12);
        // Item 2: most plays (1), no engagement (0), growth 6 / 9.
        assert!((chart[0].heat - 100.0 * (0.5 + 0.2 * 6.0 / 9.0)).abs() < 1e-9);
        // Item 3: plays 2 / 6, all the engagement, new (growth 1).
        assert!((chart[1].heat - 100.0 * (0.5 * 2.0 / 6.0 + 0.3 + 0.2)).abs() < 1e-9);
        let without = Items { keep: |item| item != 1, id: |item: u32| names[item as usize] };
        let (without_1, _) = placings(&ledger, day2, without, &HeatWeights::default());
        assert_eq!(without_1.iter().map(|p| p.previous_rank).collect::<Vec<_>>(), vec![Some(1), None]);
        assert_eq!(
            [change(1, Some(3)), change(4, Some(2)), change(2, Some(2)), change(5, None)],
            ["↑2", "↓2", "=", "New"]
        );
    }
}
