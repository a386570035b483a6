//! `reelrank stats`.

use std::path::Path;

use crate::settings::Settings;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object (keys `items`, `users`, `events`) on the last line.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(data_dir: &Path, settings: &Settings, args: Args) -> anyhow::Result<()> {
    let store = super::open_store(data_dir, settings).await?;
    let counts = store.counts().await?;
    if args.json {
        println!("{}", serde_json::to_string(&counts)?);
    } else {
        println!("items  {}\nusers  {}\nevents {}", counts.items, counts.users, counts.events);
    }
    Ok(())
}
