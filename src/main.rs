//! Command line entry point: `uringseed make`, and the other subcommands.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use uringseed::config::Config;
use uringseed::make::{self, MakeOptions};

#[derive(Parser)]
#[command(
    name = "uringseed",
    version,
    about = "A BitTorrent seeding server on io_uring"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a .torrent from a file or directory; prints the info-hash.
    Make {
        /// File or directory to make a torrent of.
        path: PathBuf,
        /// Where to write the .torrent.
        #[arg(short, long)]
        output: PathBuf,
        /// Tracker URL; repeat for more tiers; commas inside one value make one tier.
        #[arg(short = 't', long = "tracker")]
        trackers: Vec<String>,
        /// Piece length in bytes (power of two, at least 16384); chosen from the size if absent.
        #[arg(long)]
        piece_length: Option<u64>,
        /// Mark the torrent private (BEP 27): peers only from its trackers.
        #[arg(long)]
        private: bool,
        #[arg(long)]
        comment: Option<String>,
        /// `source` key in the info dictionary (private trackers use it to make hashes unique).
        #[arg(long)]
        source: Option<String>,
        /// Record the current time as `creation date` (off by default: output is deterministic).
        #[arg(long)]
        date: bool,
        /// Hashing threads (0 = one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// No progress display.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Check a configuration file and print the effective settings.
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("uringseed: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match command {
        Command::Make {
            path,
            output,
            trackers,
            piece_length,
            private,
            comment,
            source,
            date,
            threads,
            quiet,
        } => {
            let tiers = trackers
                .iter()
                .map(|t| {
                    t.split(',')
                        .map(|u| u.trim().to_string())
                        .filter(|u| !u.is_empty())
                        .collect()
                })
                .filter(|tier: &Vec<String>| !tier.is_empty())
                .collect();
            let creation_date = date.then(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64)
            });
            let opts = MakeOptions {
                path,
                trackers: tiers,
                piece_length,
                private,
                comment,
                source,
                creation_date,
                threads,
                quiet,
            };
            let (bytes, torrent) = make::make(&opts)?;
            make::write_atomic(&output, &bytes)
                .map_err(|e| format!("{}: cannot write: {e}", output.display()))?;
            println!("{}", torrent.info_hash);
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { file } => {
            let config = Config::load(&file)?;
            println!("{config:#?}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
