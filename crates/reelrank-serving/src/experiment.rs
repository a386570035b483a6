//! A/B experiments: users are split into named variants by a hash of the experiment's name and
//! their id (deterministic, no assignment table, independent between experiments), each variant
//! running its own pipeline settings or ranking model. A feed's `request_id` starts with its
//! variant (`variant.xxxx`), so every outcome that echoes the request id is attributed to the
//! variant that served it, with no lookup table however long the experiment runs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use reelrank_core::{Event, EventKind};
use reelrank_features::{feature_key, splitmix64, PositiveRule};
use serde::{Deserialize, Serialize};

use crate::pipeline::PipelineConfig;

/// One experiment (`[serving.experiment]`); without variants nobody is in one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Salts the assignment: a new name reshuffles users.
    pub name: String,
    /// The variants; shares are relative to their sum.
    pub variants: Vec<VariantConfig>,
}

/// One arm of an experiment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VariantConfig {
    /// Name, returned with feeds and recorded with impressions (letters, digits, `-`, `_`).
    pub name: String,
    /// Share of users, relative to the other variants'.
    pub share: f64,
    /// The pipeline it runs; keys it leaves out take the built-in defaults. Absent: the served
    /// pipeline.
    pub pipeline: Option<PipelineConfig>,
    /// A ranking model directory of its own. Absent: the served model.
    pub ranking_dir: Option<PathBuf>,
}

impl ExperimentConfig {
    /// Refuses variants that cannot be told apart or attributed.
    pub fn validate(&self) -> Result<(), String> {
        for variant in &self.variants {
            let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
            if variant.name.is_empty() || !variant.name.chars().all(valid) {
                return Err(format!(
                    "experiment variant `{}`: names are letters, digits, - and _",
                    variant.name
                ));
            }
            if !(variant.share.is_finite() && variant.share > 0.0) {
                return Err(format!("experiment variant `{}`: share must be positive", variant.name));
            }
        }
        let mut names: Vec<&str> = self.variants.iter().map(|v| v.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err("experiment variants must have distinct names".into());
        }
        Ok(())
    }

    /// The variant `user_id` is in (none without variants).
    pub fn assign(&self, user_id: &str) -> Option<&VariantConfig> {
        let total: f64 = self.variants.iter().map(|v| v.share).sum();
        let point = (splitmix64(feature_key(&self.name, user_id)) >> 11) as f64 / (1u64 << 53) as f64 * total;
        let mut upto = 0.0;
        self.variants
            .iter()
            .find(|v| {
                upto += v.share;
                point < upto
            })
            .or(self.variants.last())
    }
}

/// The variant a request id names (see the module docs).
pub fn variant_of(request_id: &str) -> Option<&str> {
    request_id.split_once('.').map(|(variant, _)| variant)
}

/// Online metrics of one variant: its impressions and the outcomes attributed to them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct VariantStats {
    /// Items served.
    pub impressions: u64,
    /// `watch` events reaching the effective-play rule (half the item, or 30 s).
    pub effective_plays: u64,
    /// `finish` events.
    pub finishes: u64,
    /// `like` events.
    pub likes: u64,
}

impl VariantStats {
    /// Outcome events per impression: (effective play, finish, like).
    pub fn rates(&self) -> (f64, f64, f64) {
        let n = self.impressions.max(1) as f64;
        (self.effective_plays as f64 / n, self.finishes as f64 / n, self.likes as f64 / n)
    }
}

/// Every variant's [`VariantStats`], from the events that name a variant.
#[derive(Debug, Clone, Default)]
pub struct ExperimentStats {
    variants: BTreeMap<String, VariantStats>,
    rule: PositiveRule,
}

impl ExperimentStats {
    /// Counts `event` (on an item of duration `duration_s`) for the variant it names: its
    /// `variant`, or the one its request id starts with.
    pub fn record(&mut self, event: &Event, duration_s: Option<f64>) {
        let variant = event.variant.as_deref().or_else(|| event.request_id.as_deref().and_then(variant_of));
        let Some(variant) = variant else { return };
        let effective = event.kind == EventKind::Watch && self.rule.is_positive(event, duration_s);
        if !matches!(event.kind, EventKind::Impression | EventKind::Finish | EventKind::Like) && !effective {
            return;
        }
        let stats = self.variants.entry(variant.to_owned()).or_default();
        match event.kind {
            EventKind::Impression => stats.impressions += 1,
            EventKind::Finish => stats.finishes += 1,
            EventKind::Like => stats.likes += 1,
            _ => stats.effective_plays += 1,
        }
    }

    /// Each variant seen, by name.
    pub fn variants(&self) -> &BTreeMap<String, VariantStats> {
        &self.variants
    }
}

#[cfg(test)]
mod tests {
    use reelrank_core::Timestamp;

    use super::*;

    fn experiment(shares: &[(&str, f64)]) -> ExperimentConfig {
        ExperimentConfig {
            name: "feed-1".into(),
            variants: shares
                .iter()
                .map(|&(name, share)| VariantConfig { name: name.into(), share, ..VariantConfig::default() })
                .collect(),
        }
    }

    #[test]
    fn users_split_deterministically_in_proportion() {
        let config = experiment(&[("control", 3.0), ("treatment", 1.0)]);
        assert!(config.validate().is_ok());
        let assigned: Vec<&str> =
            (0..4000).map(|u| config.assign(&format!("u{u}")).unwrap().name.as_str()).collect();
        let treated = assigned.iter().filter(|&&v| v == "treatment").count();
        assert!((850..1150).contains(&treated), "{treated} of 4000 in a quarter share");
        assert_eq!(config.assign("u17"), config.assign("u17"));
        let renamed = ExperimentConfig { name: "feed-2".into(), ..config.clone() };
        let moved =
            (0..400).filter(|u| config.assign(&format!("u{u}")) != renamed.assign(&format!("u{u}"))).count();
        assert!(moved > 50, "another experiment splits users independently");
        assert_eq!(ExperimentConfig::default().assign("u1"), None);
    }

    #[test]
    fn bad_variants_are_refused() {
        assert!(experiment(&[("a.b", 1.0)]).validate().is_err());
        assert!(experiment(&[("a", 0.0)]).validate().is_err());
        assert!(experiment(&[("a", 1.0), ("a", 1.0)]).validate().is_err());
    }

    #[test]
    fn outcomes_count_for_the_variant_their_request_names() {
        let event = |kind, request: &str, value| Event {
            value,
            request_id: Some(request.into()),
            ..Event::new("u", "i", kind, Timestamp(0))
        };
        let mut stats = ExperimentStats::default();
        stats.record(&Event { variant: Some("b".into()), ..event(EventKind::Impression, "b.1", None) }, None);
        stats.record(&event(EventKind::Impression, "b.1", None), None);
        stats.record(&event(EventKind::Watch, "b.1", Some(50_000.0)), Some(90.0));
        stats.record(&event(EventKind::Watch, "b.1", Some(5_000.0)), Some(90.0));
        stats.record(&event(EventKind::Like, "b.1", None), None);
        stats.record(&event(EventKind::Like, "no-variant", None), None);
        let b = stats.variants()["b"];
        assert_eq!((b.impressions, b.effective_plays, b.finishes, b.likes), (2, 1, 0, 1));
        assert_eq!(b.rates(), (0.5, 0.0, 0.5));
        assert_eq!(stats.variants().len(), 1);
    }
}
