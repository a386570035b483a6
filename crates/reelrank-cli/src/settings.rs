//! Layered configuration: the built-in `config/default.toml`, then `--config FILE`, then
//! `REELRANK__SECTION__KEY` environment variables, then command-line flags.

use std::path::Path;

use anyhow::Context;
use reelrank_ann::IndexConfig;
use reelrank_eval::ImpressionConfig;
use reelrank_models::{TwoTowerConfig, ValueWeights, WideDeepConfig};
use reelrank_server::{AuthConfig, EngineConfig, IngestConfig};
use serde::Deserialize;

const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// Every setting of the binary.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub store: StoreSettings,
    pub server: ServerSettings,
    pub ingest: IngestConfig,
    pub retrieval: RetrievalSettings,
    pub ranking: RankingSettings,
    pub serving: EngineConfig,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrievalSettings {
    pub two_tower: TwoTowerConfig,
    pub index: IndexConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankingSettings {
    pub wide_deep: WideDeepConfig,
    pub impressions: ImpressionConfig,
    pub value: ValueWeights,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    pub database: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub addr: String,
    pub api_keys: AuthConfig,
    pub request_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Settings {
    /// Loads the layers; `file` is the optional `--config`.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Settings> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULT_TOML, config::FileFormat::Toml));
        if let Some(path) = file {
            anyhow::ensure!(path.is_file(), "config file {} does not exist", path.display());
            builder = builder.add_source(config::File::from(path));
        }
        let built = builder
            .add_source(config::Environment::with_prefix("REELRANK").prefix_separator("__").separator("__"))
            .build()
            .context("reading configuration")?;
        built.try_deserialize().context("invalid configuration")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_files_override() {
        let defaults = Settings::load(None).unwrap();
        assert_eq!(defaults.server.addr, "127.0.0.1:8080");
        assert_eq!(defaults.ingest.max_batch_records, 10_000);
        assert_eq!(defaults.retrieval.two_tower, TwoTowerConfig::default(), "the file states the defaults");
        assert_eq!(defaults.retrieval.index, IndexConfig::default());
        assert_eq!(defaults.ranking.wide_deep, WideDeepConfig::default());
        assert_eq!(defaults.ranking.impressions, ImpressionConfig::default());
        assert_eq!(defaults.ranking.value, ValueWeights::default());
        assert_eq!(defaults.serving, EngineConfig::default());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reelrank.toml");
        std::fs::write(&path, "[ingest]\nmax_batch_records = 7\nunknown_items = \"reject\"\n").unwrap();
        let custom = Settings::load(Some(&path)).unwrap();
        assert_eq!(custom.ingest.max_batch_records, 7);
        assert_eq!(custom.ingest.unknown_items, reelrank_server::UnknownItems::Reject);
        std::fs::write(&path, "[ingest]\nmax_batch_record = 7\n").unwrap();
        assert!(Settings::load(Some(&path)).is_err(), "misspelt keys are refused");
    }
}
