//! `GET /transparency`: how reelrank recommends, in plain words, written from the settings in
//! force on this server (the pipeline, the action weights, exploration, charts, moderation, user
//! controls, minor mode), so that it cannot drift from what the server does. Public: no key.

use std::fmt::Write;

use axum::extract::State;
use axum::response::Html;
use reelrank_charts::ChartConfig;
use reelrank_features::PositiveRule;
use reelrank_models::ValueWeights;
use reelrank_serving::{ExperimentConfig, PipelineConfig};

use crate::AppState;

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What the page is written from.
pub(crate) struct Policy<'a> {
    pub pipeline: &'a PipelineConfig,
    pub value: &'a ValueWeights,
    pub charts: &'a ChartConfig,
    pub experiment: &'a ExperimentConfig,
    pub online_learning: bool,
    pub review_after_reports: u32,
    /// Which models are loaded: the two-tower one, the Wide&Deep one.
    pub models: (bool, bool),
    pub model_version: &'a str,
}

/// `GET /transparency`.
pub(crate) async fn page(State(state): State<AppState>) -> Html<String> {
    let Some(engine) = state.engine.as_deref() else {
        return Html(render_without_feeds());
    };
    let snapshot = engine.snapshot();
    let config = engine.config();
    let policy = Policy {
        pipeline: &config.pipeline,
        value: &engine.models.value,
        charts: &config.charts,
        experiment: &config.experiment,
        online_learning: config.online.enabled,
        review_after_reports: state.ingest.review_after_reports,
        models: (snapshot.models.retrieval.is_some(), snapshot.models.ranker.is_some()),
        model_version: &snapshot.models.version,
    };
    Html(render(&policy))
}

fn render_without_feeds() -> String {
    "<!doctype html><html lang=en><meta charset=utf-8><title>How reelrank recommends</title>\
     <p>This server takes in data only; it serves no feeds.</p>"
        .to_owned()
}

fn percent(share: f64) -> String {
    format!("{:.0} %", share * 100.0)
}

/// The page for `policy`.
pub(crate) fn render(policy: &Policy<'_>) -> String {
    let p = policy.pipeline;
    let (s, f, d) = (&p.sources, &p.filters, &p.diversity);
    let rule = PositiveRule::default();
    let mut html = String::from(
        "<!doctype html><html lang=en><meta charset=utf-8><title>How reelrank recommends</title>\
         <style>body{font:16px/1.5 system-ui,sans-serif;margin:2em auto;max-width:46em;padding:0 1em}\
         td,th{padding:.2em .8em;text-align:left;border-bottom:1px solid #ddd}</style>\
         <h1>How your feed is made</h1>\
         <p>This page is written from the settings this server runs with right now.</p>",
    );
    let _ = write!(
        html,
        "<h2>1. Finding candidates</h2><p>For every feed, several sources each propose items:</p><ul>\
         <li><b>Your interests</b>: {} items whose learned profile is nearest to yours. A <i>two-tower</i> model maps you \
         (your attributes and what you recently enjoyed) and every item into one space; {}</li>\
         <li><b>Because you enjoyed</b>: {} items like each of your {} latest favourites.</li>\
         <li><b>Popular</b>: the {} hottest items overall and in the {} categories you enjoyed lately \
         (heat counts what people enjoyed, fading by half every few days).</li>\
         <li><b>New</b>: up to {} items published in the last {} hours, so new work gets seen.</li>\
         <li><b>Creators you follow</b>: their {} newest items each; and the <b>next episode</b> of series you are watching.</li></ul>",
        s.two_tower,
        if policy.models.0 { "it is loaded." } else { "no such model is loaded now, so this source is off." },
        s.similar_per_positive,
        s.recent_positives,
        s.trending,
        s.trending_categories,
        s.fresh,
        s.fresh_max_age_hours,
        s.per_followed_creator,
    );
    let _ = write!(
        html,
        "<p>You enjoyed an item when you finished, liked, shared or commented on it, or watched at least {} of it \
         (or {} seconds).</p>",
        percent(rule.min_watch_ratio),
        rule.min_watch_ms / 1000.0
    );
    let flags =
        if f.blocked_flags.is_empty() { "none".to_owned() } else { escape(&f.blocked_flags.join(", ")) };
    let _ = write!(
        html,
        "<h2>2. Leaving items out</h2><ul><li>Items not approved by review, flagged ({flags}), or by a creator \
         blocked by moderation.</li><li>Items outside their licence window or region, or rated above your age \
         (unknown age counts as {}).</li><li>What you have already seen or watched.</li><li>What you marked \
         <i>not interested</i>, creators you marked so {} times or said you are not interested in, and interest \
         tags you deleted.</li></ul>",
        f.age_when_unknown, f.creator_block_after
    );
    let mut weights: Vec<(&String, &f32)> = policy.value.0.iter().collect();
    weights.sort_by(|a, b| b.1.total_cmp(a.1));
    let rows: String = weights
        .iter()
        .map(|(action, w)| format!("<tr><td>{}</td><td>{w:+}</td></tr>", escape(action)))
        .collect();
    let _ = write!(
        html,
        "<h2>3. Ranking</h2><p>{} predicts how likely you are to do each of these with each candidate; an item's \
         value is the sum of those chances times these weights (negative ones count against):</p>\
         <table><tr><th>Action</th><th>Weight</th></tr>{rows}</table>\
         <p>Each time you mark a creator's item <i>not interested</i>, their other items' values are halved.</p>",
        if policy.models.1 {
            "A <i>Wide&amp;Deep</i> model (remembered combinations of features, plus learned embeddings that generalise)"
        } else {
            "No ranking model is loaded now: candidates are ranked by heat. When one is, a <i>Wide&amp;Deep</i> model"
        },
    );
    let _ = write!(
        html,
        "<h2>4. Variety and exploration</h2><p>{} Within any {} consecutive items, at most {} come from one creator, \
         {} from one category and {} from one series; items too much like the ones above them are moved down. \
         <b>{}</b> of the slots go to exploration: new items, and items few people have seen yet (each is shown \
         about {} times before it must win on its value). Right after you enjoy something, up to {} slots go to \
         items like it for {} minutes.</p>",
        if d.enabled { "" } else { "Re-ranking is <b>off</b> on this server." },
        d.window,
        d.max_per_creator,
        d.max_per_category,
        d.max_per_series,
        percent(f64::from(d.exploration_share)),
        d.starting_impressions,
        d.follow_up_slots,
        d.follow_up_minutes
    );
    let _ = write!(
        html,
        "<h2>5. Learning</h2><p>{} The models in use are version <code>{}</code>.</p>",
        if policy.online_learning {
            "The models learn from what people do within seconds to minutes, besides being retrained from the whole log."
        } else {
            "The models change only when retrained from the whole log."
        },
        escape(policy.model_version)
    );
    if !policy.experiment.variants.is_empty() {
        let variants: Vec<String> = policy
            .experiment
            .variants
            .iter()
            .map(|v| format!("{} ({})", escape(&v.name), percent(v.share)))
            .collect();
        let _ = write!(
            html,
            "<p>An experiment, <i>{}</i>, compares variants of the feed; every user is in one, by a fixed draw: {}.</p>",
            escape(&policy.experiment.name),
            variants.join(", ")
        );
    }
    let c = policy.charts;
    let _ = write!(
        html,
        "<h2>6. Charts</h2><p><a href=\"/dashboard#charts\">Charts</a> rank items by their share of a category's effective \
         plays: plays watched past {} of an item's length (or {} minutes). One account counts once per item and \
         day. Accounts behaving like machines (more than {} plays in an hour, plays on a timer, or several accounts \
         running one script) count neither in charts nor in what the models learn{}.</p>",
        percent(c.effective.fraction),
        c.effective.cap_secs / 60.0,
        c.guard.max_plays_per_hour,
        if c.guard.enabled { "" } else { " (this detection is off on this server)" },
    );
    let _ = write!(
        html,
        "<h2>7. Review</h2><p>Items are reviewed by people, who may approve, reject, take down or flag them \
         (rumour, abuse), and block a creator; every decision is recorded with who made it and why. {}</p>",
        match policy.review_after_reports {
            0 => "Reports by users are counted but do not send items back to review on their own.".to_owned(),
            n => format!("An item reported by {n} different users goes back to review and out of every feed meanwhile."),
        }
    );
    let _ = write!(
        html,
        "<h2>8. Your controls</h2><ul><li>Turn personalisation off: your next feed is popular and new items only, \
         still filtered as above.</li><li>See the interest tags we associate with you and delete any: items with \
         it leave your feed, and what you enjoyed with it no longer shapes it.</li><li>Say you are not interested \
         in an item, a creator or a tag.</li><li>Reset your profile: what you did until then no longer shapes your \
         feed.</li><li>Ask why you see an item: <form action=\"/v1/explain\">user <input name=user_id size=10> \
         item <input name=item_id size=10> <button>Why am I seeing this?</button></form></li></ul>"
    );
    let minors = &p.minors;
    let _ = write!(
        html,
        "<h2>9. Minors</h2><p>Users younger than 18 by their year of birth, or marked as minors, see only items \
         rated for their age (at most 17; {} when their age is unknown){}.</p>",
        f.minor_age_when_unknown,
        if minors.daily_watch_minutes > 0.0 {
            format!(", and their feed stops for the day after {} minutes of watching", minors.daily_watch_minutes)
        } else {
            String::new()
        }
    );
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape(r#"<b>"Tom" & 'Jerry'</b>"#),
            "&lt;b&gt;&quot;Tom&quot; &amp; &#39;Jerry&#39;&lt;/b&gt;"
        );
    }

    #[test]
    fn the_page_follows_the_settings() {
        let mut pipeline = PipelineConfig::default();
        pipeline.diversity.exploration_share = 0.25;
        pipeline.minors.daily_watch_minutes = 45.0;
        let mut value = ValueWeights::default();
        value.0.insert("like".into(), 7.5);
        let charts = ChartConfig::default();
        let experiment = ExperimentConfig::default();
        let policy = Policy {
            pipeline: &pipeline,
            value: &value,
            charts: &charts,
            experiment: &experiment,
            online_learning: true,
            review_after_reports: 4,
            models: (true, true),
            model_version: "v<1>",
        };
        let html = render(&policy);
        for expected in [
            "<b>25 %</b>",
            "<td>like</td><td>+7.5</td>",
            "after 45 minutes",
            "reported by 4 different",
            "v&lt;1&gt;",
        ] {
            assert!(html.contains(expected), "{expected} missing");
        }
        let mut uncapped = pipeline.clone();
        uncapped.minors.daily_watch_minutes = 0.0;
        let quiet = render(&Policy {
            pipeline: &uncapped,
            review_after_reports: 0,
            models: (false, false),
            ..policy
        });
        assert!(!quiet.contains("minutes of watching") && quiet.contains("do not send items back"));
        assert!(quiet.contains("ranked by heat"));
    }
}
