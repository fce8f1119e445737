//! Command-line entry: parses arguments and dispatches to one module per subcommand.
//! Subcommands print results on stdout and one line per problem on stderr.

mod bench;
mod embed;
mod model;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::ModelConfig;

#[derive(Debug, Parser)]
#[command(
    name = "imgsearch",
    version,
    about = "Self-hosted image search (imgsearch 2020-03-20 API)"
)]
pub struct Cli {
    /// TOML configuration file: top-level keys are the long flag names (env IMGSEARCH_CONFIG).
    /// Flags and environment variables override it.
    #[arg(long, env = crate::config::CONFIG_ENV, global = true)]
    pub config: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub model: ModelConfig,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the imgsearch 2020-03-20 API over HTTP.
    Serve(serve::ServeConfig),
    /// Print one JSON line per image: {"file", "embedding": [1280 floats]}.
    Embed {
        /// JPEG or PNG files.
        #[arg(required = true)]
        images: Vec<std::path::PathBuf>,
    },
    /// Print one JSON line per image with its top-5 ImageNet classes.
    Classify {
        #[arg(required = true)]
        images: Vec<std::path::PathBuf>,
        /// How many classes to print.
        #[arg(long, default_value_t = 5)]
        top: usize,
    },
    /// Inspect the network.
    Model {
        #[command(subcommand)]
        command: model::ModelCommand,
    },
    /// Benchmarks (see README for the figures).
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

pub fn main() -> ExitCode {
    if let Err(e) = load_config_file() {
        eprintln!("imgsearch: {e}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(config) => serve::run(&cli.model, config),
        Command::Embed { images } => embed::run(&cli.model, &images, embed::Output::Embedding),
        Command::Classify { images, top } => {
            embed::run(&cli.model, &images, embed::Output::Classes { top })
        }
        Command::Model { command } => model::run(&cli.model, command),
        Command::Bench { command } => bench::run(&cli.model, command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("imgsearch: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Applies `--config FILE` / `IMGSEARCH_CONFIG` before clap reads flags and environment:
/// each key becomes its `IMGSEARCH_*` variable unless that variable is already set.
fn load_config_file() -> Result<(), crate::config::ConfigFileError> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let from_flag = args.iter().enumerate().find_map(|(i, a)| {
        let a = a.to_str()?;
        if a == "--config" {
            args.get(i + 1).map(std::path::PathBuf::from)
        } else {
            a.strip_prefix("--config=").map(std::path::PathBuf::from)
        }
    });
    let Some(path) =
        from_flag.or_else(|| std::env::var_os(crate::config::CONFIG_ENV).map(Into::into))
    else {
        return Ok(());
    };
    for (name, value) in crate::config::config_file_env(&path)? {
        if std::env::var_os(&name).is_none() {
            // Single-threaded here: nothing else reads the environment yet.
            unsafe { std::env::set_var(name, value) };
        }
    }
    Ok(())
}
