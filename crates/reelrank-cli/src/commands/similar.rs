//! `reelrank similar ITEM_ID`: item-to-item neighbours from the saved retrieval model and index.
//!
//! An item trained on is looked up in the index; an item ingested after training (or one the
//! index lacks) gets its vector from its content features, the cold-start path serving uses.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use reelrank_core::Timestamp;
use reelrank_features::item_id_key;
use reelrank_serving::Retrieval;
use serde_json::json;

use crate::settings::Settings;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The item whose neighbours to list.
    item_id: String,
    /// How many.
    #[arg(long, short, default_value_t = 10)]
    n: usize,
    /// Print one JSON object (`item_id`, `from`, `similar: [{item_id, title, score}]`) on the last line.
    #[arg(long)]
    json: bool,
}

pub async fn run(data_dir: &Path, settings: &Settings, args: Args) -> anyhow::Result<()> {
    let dir = super::train::model_dir(data_dir);
    let context = || format!("no retrieval model in {}: run `reelrank train retrieval` first", dir.display());
    let retrieval = Retrieval::load(&dir).with_context(context)?;
    let store = super::open_store(data_dir, settings).await?;
    let item = store
        .item(&args.item_id)
        .await?
        .with_context(|| format!("no item `{}` in the store", args.item_id))?;
    let from = match retrieval.vector(item_id_key(&item.item_id)) {
        Some(_) => "index",
        None => "content features",
    };
    let neighbours = retrieval.similar(&item, args.n, Timestamp::now());
    let (items, _) = super::train::catalog(&store).await?;
    let by_key: HashMap<u64, &reelrank_core::Item> =
        items.iter().map(|i| (item_id_key(&i.item_id), i)).collect();
    let rows: Vec<_> = neighbours
        .iter()
        .filter_map(|(key, score)| by_key.get(key).map(|i| (i, *score)))
        .map(|(i, score)| json!({"item_id": i.item_id, "title": i.title, "category": i.category.as_str(), "score": score}))
        .collect();
    println!("items like {} ({}), by its vector from the {from}:", item.item_id, item.title);
    for row in &rows {
        println!(
            "  {:.3}  {:<12} {:<12} {}",
            row["score"].as_f64().unwrap_or(0.0),
            row["item_id"].as_str().unwrap_or(""),
            row["category"].as_str().unwrap_or(""),
            row["title"].as_str().unwrap_or("")
        );
    }
    if args.json {
        println!("{}", json!({"item_id": item.item_id, "from": from, "similar": rows}));
    }
    Ok(())
}
