//! `reelrank bench shared-state`: users' activity and item counters kept in Redis
//! (`[serving.shared_state] redis_url`, as replicas share them) against the in-process state of a
//! single replica, side by side on one simulated log in a fresh embedded store: events applied
//! per second by each (both reading the log from the store), and what Redis holds per user
//! (`used_memory` before and after, less the item counters) and per item (`MEMORY USAGE` of the
//! counters' hashes), with the stream of the pages' counted items apart (bounded by its pages,
//! not by items), and how long a replica takes to read every item's counters against those of
//! the items of one more page; under a key prefix of the run's own, deleted at the end.

use std::time::Instant;

use reelrank_core::{Event, ModerationStatus, Timestamp};
use reelrank_server::{SharedState, SharedStateConfig};
use reelrank_serving::{Activity, Catalog};
use reelrank_sim::{SimConfig, Simulation};
use reelrank_store::Store;

use crate::settings::Settings;

/// Arguments of `bench shared-state`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Users.
    #[arg(long, default_value_t = 5_000)]
    users: usize,
    /// Items.
    #[arg(long, default_value_t = 20_000)]
    items: usize,
    /// Days simulated.
    #[arg(long, default_value_t = 7)]
    days: u32,
}

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let redis_url = &settings.serving.shared_state.redis_url;
    anyhow::ensure!(
        !redis_url.is_empty(),
        "set [serving.shared_state] redis_url (REELRANK__SERVING__SHARED_STATE__REDIS_URL)"
    );
    let dir = tempfile::tempdir()?;
    let store = Store::open_in_dir(dir.path()).await?;
    let sim = Simulation::new(SimConfig {
        users: args.users,
        items: args.items,
        days: args.days,
        ..SimConfig::default()
    });
    store.upsert_items(sim.items(), ModerationStatus::Approved).await?;
    let mut events: Vec<Event> = Vec::new();
    tokio::task::block_in_place(|| {
        sim.run(|_, day| {
            events.extend_from_slice(day);
            anyhow::Ok(())
        })
    })?;
    for chunk in events.chunks(reelrank_ingest::IMPORT_BATCH_ROWS) {
        store.append_events(chunk).await?;
    }
    let catalog = Catalog::new(store.all_items().await?);

    let started = Instant::now();
    let mut activity = Activity::new(catalog.len(), settings.serving.heat_half_life_hours);
    let mut after = 0;
    loop {
        let page = store.events_after(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for stored in &page {
            activity.record(&catalog, &stored.event);
        }
    }
    let in_process_s = started.elapsed().as_secs_f64();

    let config = SharedStateConfig {
        redis_url: redis_url.clone(),
        key_prefix: format!("reelrank_bench_{}_{}:", std::process::id(), Timestamp::now().millis()),
    };
    let shared = SharedState::connect(&config, 0, settings.serving.heat_half_life_hours).await?;
    let before = shared.stats().await?.used_memory_bytes;
    let started = Instant::now();
    let applied = shared.catch_up(&store, &catalog, &|_| false).await?;
    let redis_s = started.elapsed().as_secs_f64();
    let stats = shared.stats().await?;
    let used = stats.used_memory_bytes.saturating_sub(before);
    let started = Instant::now();
    let counts = shared.item_counts(0).await?.unwrap_or_default();
    let whole_read_ms = started.elapsed().as_secs_f64() * 1e3;
    // What a replica reads on a later tick: the log's last page of events once more, then the
    // counts of the items it counted.
    let again: Vec<Event> = events[events.len().saturating_sub(2_000)..]
        .iter()
        .map(|event| Event { event_id: None, ..event.clone() })
        .collect();
    store.append_events(&again).await?;
    shared.catch_up(&store, &catalog, &|_| false).await?;
    let started = Instant::now();
    let changes = shared.item_counts(counts.as_of).await?.unwrap_or_default();
    let changes_read_ms = started.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(changes.since == counts.as_of, "the changes were not read on their own");
    let counted: std::collections::HashSet<u64> = counts
        .heat
        .iter()
        .map(|&(key, _)| key)
        .chain(counts.impressions.iter().map(|&(key, _)| key))
        .collect();
    let bytes_per_item = stats.item_counter_bytes as f64 / counted.len().max(1) as f64;
    let deleted = shared.clear().await?;
    let users = activity.users();
    anyhow::ensure!(applied == events.len(), "Redis took {applied} of {} events", events.len());
    let (in_process_rate, redis_rate) = (events.len() as f64 / in_process_s, events.len() as f64 / redis_s);
    let counters = stats.item_counter_bytes + stats.counted_pages_bytes;
    let bytes_per_user = used.saturating_sub(counters) as f64 / users as f64;
    let counted_pages_mb = stats.counted_pages_bytes as f64 / 1e6;
    println!(
        "shared state: {} events of {users} users applied in process at {in_process_rate:.0} events/s, \
         to Redis at {redis_rate:.0} events/s ({:.2}x); Redis holds {bytes_per_user:.0} bytes per user \
         and {bytes_per_item:.0} bytes per item counted ({} items), plus {counted_pages_mb:.1} MB of the \
         pages' counted items; {deleted} keys, deleted; a replica reads every item's counters in \
         {whole_read_ms:.1} ms, those of the {} items of one more page in {changes_read_ms:.2} ms",
        events.len(),
        redis_rate / in_process_rate,
        counted.len(),
        changes.heat.len().max(changes.impressions.len())
    );
    println!(
        "{}",
        serde_json::json!({"bench": "shared-state", "events": events.len(), "users": users,
            "in_process_events_per_s": in_process_rate, "redis_events_per_s": redis_rate,
            "redis_bytes_per_user": bytes_per_user, "redis_bytes_per_item": bytes_per_item,
            "redis_counted_pages_bytes": stats.counted_pages_bytes,
            "whole_read_ms": whole_read_ms, "changes_read_ms": changes_read_ms,
            "items_counted": counted.len(), "redis_keys": deleted})
    );
    Ok(())
}
