//! `reelrank bench soak`: a fixed request rate against running replicas for a bounded time, with
//! mixed feed reads and event writes, as a load balancer would spread them: requests go round
//! the replicas, and one refused (connection down, or 503) is retried on the next, the same
//! write body each time (its event ids make a retry idempotent). Every 10 s it prints what
//! clients saw (answers by class, first-try 5xx, failures after every replica was tried, p99)
//! and the resident memory of the processes named by `--pid`; at the end it reads the store
//! (the settings' database) and checks that every acknowledged event is there exactly once.
//! `bench/soak.sh` starts the replicas, the trainer, PostgreSQL and Redis around it and kills
//! them in turn for the fault run.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::settings::Settings;

/// Arguments of `bench soak`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A replica's base URL (repeat for each).
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// Requests started per second, whatever the answers' pace (an open loop).
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Share of requests that post events (the rest read feeds).
    #[arg(long, default_value_t = 0.3)]
    writes: f64,
    /// Events per write.
    #[arg(long, default_value_t = 5)]
    batch: usize,
    /// Users the requests are for (`u0`, `u1`, ... as simulated).
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Items the events name (`i0`, `i1`, ... as simulated).
    #[arg(long, default_value_t = 1000)]
    items: usize,
    /// API key sent as a bearer token.
    #[arg(long)]
    api_key: Option<String>,
    /// A process whose resident memory to sample (repeat for each).
    #[arg(long = "pid")]
    pids: Vec<u32>,
    /// Requests in flight at most; a tick past it is counted as shed by the client.
    #[arg(long, default_value_t = 1024)]
    max_in_flight: usize,
}

/// What clients saw, over the run or a window of it.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct Seen {
    reads: u64,
    writes: u64,
    ok: u64,
    client_errors: u64,
    /// Final answers in 5xx after every replica was tried.
    server_errors: u64,
    /// No answer from any replica (connection refused, timeout).
    failed: u64,
    /// First tries answered 5xx (a retry may have succeeded).
    first_try_5xx: u64,
    /// Requests retried on another replica.
    retried: u64,
    /// Ticks not sent because `max_in_flight` requests were waiting.
    shed: u64,
    #[serde(skip)]
    latencies_ms: Vec<f32>,
}

impl Seen {
    fn p(&mut self, q: f64) -> Option<f32> {
        if self.latencies_ms.is_empty() {
            return None;
        }
        self.latencies_ms.sort_unstable_by(f32::total_cmp);
        Some(self.latencies_ms[((self.latencies_ms.len() - 1) as f64 * q).round() as usize])
    }

    fn errors(&self) -> u64 {
        self.server_errors + self.failed
    }
}

/// The run's tallies: the current window, the whole run, and the acknowledged event ids.
#[derive(Default)]
struct Tally {
    window: Seen,
    total: Seen,
    acked: Vec<String>,
}

/// How one request ended.
enum Outcome {
    Answered { status: u16, first_try_5xx: bool, retried: bool },
    Failed { first_try_5xx: bool },
}

pub async fn run(data_dir: &Path, settings: &Settings, args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate > 0 && args.seconds > 0, "--rate and --seconds must be positive");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(1))
        .build()?;
    let run_id = format!("soak-{:x}", reelrank_core::Timestamp::now().millis());
    let tally = Arc::new(Mutex::new(Tally::default()));
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let args = Arc::new(args);
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(7);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut next_report = Duration::from_secs(10);
    let mut memory: HashMap<u32, Vec<(u64, Option<u64>)>> = HashMap::new();
    eprintln!(
        "{:>5} {:>6} {:>6} {:>5} {:>5} {:>6} {:>7} {:>8}  rss MB",
        "t", "sent", "ok", "5xx", "fail", "retry", "shed", "p99 ms"
    );
    for n in 0u64.. {
        tick.tick().await;
        let elapsed = started.elapsed();
        if elapsed >= next_report {
            report_window(&tally, &args.pids, elapsed.as_secs(), &mut memory);
            next_report += Duration::from_secs(10);
        }
        if elapsed >= Duration::from_secs(args.seconds) {
            break;
        }
        if in_flight.load(std::sync::atomic::Ordering::Acquire) >= args.max_in_flight {
            let mut tally = tally.lock().expect("tally");
            tally.window.shed += 1;
            tally.total.shed += 1;
            continue;
        }
        let write = rng.random_bool(args.writes);
        let user = format!("u{}", rng.random_range(0..args.users));
        let request = match write {
            true => Request::Write(events(&run_id, n, &user, &args, &mut rng)),
            false => Request::Read(user),
        };
        let (client, args, tally, in_flight) =
            (client.clone(), args.clone(), tally.clone(), in_flight.clone());
        in_flight.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        tokio::spawn(async move {
            let sent = Instant::now();
            let outcome = send(&client, &args, n as usize, &request).await;
            let ms = sent.elapsed().as_secs_f32() * 1e3;
            let mut tally = tally.lock().expect("tally");
            if let (Request::Write((ids, _)), Outcome::Answered { status: 200..=299, .. }) =
                (&request, &outcome)
            {
                tally.acked.extend(ids.iter().cloned());
            }
            let Tally { window, total, .. } = &mut *tally;
            for seen in [window, total] {
                seen.record(&request, &outcome, ms);
            }
            in_flight.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        });
    }
    // Let the requests in flight finish (the client times out after 5 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    while in_flight.load(std::sync::atomic::Ordering::Acquire) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut total, acked) = {
        let mut tally = tally.lock().expect("tally");
        (std::mem::take(&mut tally.total), std::mem::take(&mut tally.acked))
    };
    let (lost, duplicated) = check_stored(data_dir, settings, &run_id, &acked).await?;
    let (p50, p99, p999) = (total.p(0.5), total.p(0.99), total.p(0.999));
    // Memory from the first minute on (start-up loads are behind it), per process.
    let rss: HashMap<String, serde_json::Value> = memory
        .iter()
        .map(|(pid, samples)| {
            let kept: Vec<u64> = samples.iter().filter(|(t, _)| *t >= 60).filter_map(|(_, rss)| *rss).collect();
            let (first, last, max) = (kept.first(), kept.last(), kept.iter().max());
            (pid.to_string(), json!({"first_mb": first.map(|b| b / 1_000_000), "last_mb": last.map(|b| b / 1_000_000), "max_mb": max.map(|b| b / 1_000_000)}))
        })
        .collect();
    let sent = total.reads + total.writes;
    println!(
        "soak: {sent} requests over {} s at {}/s to {} replicas ({} reads, {} writes): {} ok, {} 4xx, {} 5xx, {} failed, \
         {} first-try 5xx, {} retried; latency p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms; {} acknowledged events, {lost} lost, {duplicated} stored twice",
        args.seconds,
        args.rate,
        args.urls.len(),
        total.reads,
        total.writes,
        total.ok,
        total.client_errors,
        total.server_errors,
        total.failed,
        total.first_try_5xx,
        total.retried,
        p50.unwrap_or(f32::NAN),
        p99.unwrap_or(f32::NAN),
        p999.unwrap_or(f32::NAN),
        acked.len(),
    );
    println!(
        "{}",
        json!({"bench": "soak", "seconds": args.seconds, "rate": args.rate, "replicas": args.urls.len(),
            "seen": total, "errors": total.errors(), "p50_ms": p50, "p99_ms": p99, "p999_ms": p999,
            "acknowledged_events": acked.len(), "lost": lost, "duplicated": duplicated, "rss": rss})
    );
    anyhow::ensure!(
        lost == 0 && duplicated == 0,
        "{lost} acknowledged events lost, {duplicated} stored twice"
    );
    Ok(())
}

/// A request: a user's feed, or a write's event ids and body.
enum Request {
    Read(String),
    Write((Vec<String>, serde_json::Value)),
}

impl Seen {
    fn record(&mut self, request: &Request, outcome: &Outcome, ms: f32) {
        match request {
            Request::Read(_) => self.reads += 1,
            Request::Write(_) => self.writes += 1,
        }
        let first = match *outcome {
            Outcome::Answered { status, first_try_5xx, retried } => {
                match status {
                    200..=299 => {
                        self.ok += 1;
                        self.latencies_ms.push(ms);
                    }
                    400..=499 => self.client_errors += 1,
                    _ => self.server_errors += 1,
                }
                self.retried += u64::from(retried);
                first_try_5xx
            }
            Outcome::Failed { first_try_5xx } => {
                self.failed += 1;
                first_try_5xx
            }
        };
        self.first_try_5xx += u64::from(first);
    }
}

/// `batch` events of `user` with ids of this run's own.
fn events(
    run_id: &str,
    n: u64,
    user: &str,
    args: &Args,
    rng: &mut impl Rng,
) -> (Vec<String>, serde_json::Value) {
    const KINDS: [&str; 5] = ["play", "finish", "like", "skip", "share"];
    let now = reelrank_core::Timestamp::now().to_string();
    let ids: Vec<String> = (0..args.batch).map(|k| format!("{run_id}-{n}-{k}")).collect();
    let body = ids
        .iter()
        .map(|id| {
            let item = format!("i{}", rng.random_range(0..args.items));
            let kind = KINDS[rng.random_range(0..KINDS.len())];
            json!({"event_id": id, "user_id": user, "item_id": item, "kind": kind, "ts": now})
        })
        .collect();
    (ids, serde_json::Value::Array(body))
}

/// Sends `request` to replica `n % replicas`, and on to the next ones while it is refused.
async fn send(client: &reqwest::Client, args: &Args, n: usize, request: &Request) -> Outcome {
    let mut first_try_5xx = None;
    let replicas = args.urls.len();
    for attempt in 0..replicas {
        let base = &args.urls[(n + attempt) % replicas];
        let builder = match request {
            Request::Read(user) => client.get(format!("{base}/v1/recommend?user_id={user}&n=10")),
            Request::Write((_, body)) => client.post(format!("{base}/v1/events")).json(body),
        };
        let builder = match &args.api_key {
            Some(key) => builder.bearer_auth(key),
            None => builder,
        };
        let status = match builder.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                // Read the body whole: a feed is answered once it is delivered.
                let _ = response.bytes().await;
                Some(status)
            }
            Err(_) => None,
        };
        first_try_5xx.get_or_insert(status.is_some_and(|s| s >= 500));
        match status {
            Some(status) if status < 500 || attempt + 1 == replicas => {
                let first_try_5xx = first_try_5xx.unwrap_or(false);
                return Outcome::Answered { status, first_try_5xx, retried: attempt > 0 };
            }
            _ => {}
        }
    }
    Outcome::Failed { first_try_5xx: first_try_5xx.unwrap_or(false) }
}

/// Prints the window's figures and the processes' memory, and starts a new window.
fn report_window(
    tally: &Mutex<Tally>,
    pids: &[u32],
    t: u64,
    memory: &mut HashMap<u32, Vec<(u64, Option<u64>)>>,
) {
    let mut window = std::mem::take(&mut tally.lock().expect("tally").window);
    let rss: Vec<String> = pids
        .iter()
        .map(|&pid| {
            let bytes = resident_bytes(pid);
            memory.entry(pid).or_default().push((t, bytes));
            bytes.map_or("-".to_owned(), |b| (b / 1_000_000).to_string())
        })
        .collect();
    let p99 = window.p(0.99).map_or("-".to_owned(), |p| format!("{p:.1}"));
    eprintln!(
        "{t:>5} {:>6} {:>6} {:>5} {:>5} {:>6} {:>7} {p99:>8}  {}",
        window.reads + window.writes,
        window.ok,
        window.server_errors,
        window.failed,
        window.retried,
        window.shed,
        rss.join(" ")
    );
}

/// A process's resident memory (`VmRSS`), `None` when it is gone.
fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Reads the events of this run from the store: how many acknowledged ones are missing, and how
/// many are stored more than once.
async fn check_stored(
    data_dir: &Path,
    settings: &Settings,
    run_id: &str,
    acked: &[String],
) -> anyhow::Result<(usize, usize)> {
    let store = crate::commands::open_store(data_dir, settings).await?;
    let prefix = format!("{run_id}-");
    let (events, _) =
        store.all_events(|event| event.event_id.as_deref().is_some_and(|id| id.starts_with(&prefix))).await?;
    let mut stored: HashMap<&str, usize> = HashMap::new();
    for event in &events {
        *stored.entry(event.event_id.as_deref().expect("kept by id")).or_default() += 1;
    }
    let lost = acked.iter().filter(|id| !stored.contains_key(id.as_str())).count();
    let duplicated = stored.values().filter(|&&n| n > 1).count();
    store.close().await;
    Ok((lost, duplicated))
}
