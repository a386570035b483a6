//! `reelrank`: the recommendation engine for short-video and micro-drama platforms, in one binary.

mod commands;
mod settings;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::settings::{LogFormat, Settings};

/// Serving allocates and frees many small buffers per request on every worker thread, where the
/// system allocator's shared arenas cost about a sixth of a request's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "reelrank", version, about, long_about = None)]
struct Cli {
    /// Directory of the embedded store and of everything reelrank writes.
    #[arg(long, global = true, default_value = "./reelrank-data", env = "REELRANK_DATA_DIR")]
    data_dir: PathBuf,
    /// Database URL (`postgres://...`); default: the SQLite file in --data-dir.
    #[arg(long, global = true)]
    database: Option<String>,
    /// Configuration file (TOML) layered over the built-in defaults.
    #[arg(long, global = true, env = "REELRANK_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (ingest, feeds, explanations, health, metrics) until Ctrl-C or SIGTERM.
    Serve(commands::serve::Args),
    /// Import data from files into the store (or only check them with --check).
    Import(commands::import::Args),
    /// Generate a simulated platform (catalog, users, behaviour, ground truth) into the store or CSV.
    Simulate(commands::simulate::Args),
    /// Print the store's item, user and event counts.
    Stats(commands::stats::Args),
    /// Simulate a small platform into a fresh data directory, train both models on it and serve feeds.
    Demo(commands::demo::Args),
    /// Train models from the store's events and save them in the data directory.
    #[command(subcommand)]
    Train(commands::train::Train),
    /// The items nearest to an item by the trained retrieval model's vectors.
    Similar(commands::similar::Args),
    /// Offline evaluation on fixed rating splits.
    #[command(subcommand)]
    Eval(commands::eval::Eval),
    /// A chart (effective-play market share, heat, rank change) or the accounts excluded as fake traffic.
    Charts(commands::charts::Args),
    /// Measure throughput and latency (ingest, simulator, training, vector search).
    #[command(subcommand)]
    Bench(commands::bench::Bench),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = Settings::load(cli.config.as_deref()).and_then(|mut settings| {
        if let Some(url) = &cli.database {
            settings.store.database = url.clone();
        }
        init_tracing(&settings);
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(run(cli, settings))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    let data_dir = cli.data_dir;
    match cli.command {
        Command::Serve(args) => commands::serve::run(&data_dir, &settings, args, |_| {}).await,
        Command::Import(args) => commands::import::run(&data_dir, &settings, args).await,
        Command::Simulate(args) => commands::simulate::run(&data_dir, &settings, args).await,
        Command::Stats(args) => commands::stats::run(&data_dir, &settings, args).await,
        Command::Demo(args) => commands::demo::run(&data_dir, &settings, args).await,
        Command::Train(train) => commands::train::run(&data_dir, &settings, train).await,
        Command::Similar(args) => commands::similar::run(&data_dir, &settings, args).await,
        Command::Eval(eval) => commands::eval::run(&settings, eval).await,
        Command::Charts(args) => commands::charts::run(&data_dir, &settings, args).await,
        Command::Bench(bench) => commands::bench::run(&data_dir, &settings, bench).await,
    }
}

fn init_tracing(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&settings.log.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match settings.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// clap checks a command line's definition (unique argument and group names, valid defaults)
    /// only when it is built in a debug binary: check every subcommand here rather than at a user's
    /// first run of it.
    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
