//! Command-line entry: parses arguments and dispatches to one module per subcommand.
//! Subcommands print results on stdout and one line per problem on stderr.

mod bench;
mod embed;
mod model;
mod quality;
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
