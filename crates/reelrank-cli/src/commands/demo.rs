//! `reelrank demo`: simulate a small platform into a fresh data directory, train both models on
//! its log and serve feeds from them.

use std::path::Path;
use std::time::Instant;

use reelrank_core::Timestamp;
use reelrank_sim::{SimConfig, Simulation};

use super::train::Train;

use crate::settings::Settings;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Users of the simulated platform.
    #[arg(long, default_value_t = 2000)]
    pub users: usize,
    /// Items of the simulated platform.
    #[arg(long, default_value_t = 10_000)]
    pub items: usize,
    /// Simulated days.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Prepare the data and the models, then exit instead of serving.
    #[arg(long)]
    pub no_serve: bool,
}

pub async fn run(data_dir: &Path, settings: &Settings, args: Args) -> anyhow::Result<()> {
    let start = Instant::now();
    let demo_dir = data_dir.join("demo");
    if demo_dir.exists() {
        fs_err::remove_dir_all(&demo_dir)?;
    }
    let mut settings = settings.clone();
    settings.store.database.clear(); // the demo always runs on its own embedded store
    let store = super::open_store(&demo_dir, &settings).await?;
    println!(
        "simulating {} users and {} items over {} days into {}",
        args.users,
        args.items,
        args.days,
        demo_dir.display()
    );
    // The simulated days end yesterday, so the feeds served next continue the log: by the log's
    // clock, users of an older log would be idle past `forget_idle_days` at the first live event.
    let today = Timestamp::now().millis().div_euclid(Timestamp::DAY_MS);
    let sim = Simulation::new(SimConfig {
        users: args.users,
        items: args.items,
        days: args.days,
        start: Timestamp((today - i64::from(args.days)) * Timestamp::DAY_MS),
        ..SimConfig::default()
    });
    super::simulate::into_store(&sim, &store, &settings).await?;
    sim.write_truth(&super::simulate::truth_dir(&demo_dir))?;
    let counts = store.counts().await?;
    println!(
        "simulated in {:.1} s: {} items, {} users, {} events",
        start.elapsed().as_secs_f64(),
        counts.items,
        counts.users,
        counts.events
    );
    store.close().await;
    super::train::run(&demo_dir, &settings, Train::Retrieval { epochs: None }).await?;
    super::train::run(&demo_dir, &settings, Train::Ranking { epochs: None }).await?;
    println!("data and models ready in {:.1} s", start.elapsed().as_secs_f64());
    if args.no_serve {
        return Ok(());
    }
    let user = sim.users().first().map_or("u0", |u| u.user_id.as_str()).to_owned();
    let item = sim.items().first().map_or("i0", |i| i.item_id.as_str()).to_owned();
    super::serve::run(&demo_dir, &settings, super::serve::Args { addr: Some(args.addr), role: None }, move |url| {
        println!("dashboard ready in {:.1} s from the start of the demo", start.elapsed().as_secs_f64());
        println!("dashboard: {url}/dashboard   (feed preview: {url}/dashboard#feed?user={user})");
        println!("try: curl '{url}/v1/recommend?user_id={user}&n=10'");
        println!("     curl '{url}/v1/explain?user_id={user}&item_id={item}'   curl '{url}/v1/similar?item_id={item}'");
        println!("     curl {url}/readyz   curl {url}/metrics   (Ctrl-C stops)");
    })
    .await
}
