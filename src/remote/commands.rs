//! The client subcommands `db create|list|delete`, `add` and `search`: one signed API call
//! each (see `remote::client`), results on stdout, errors as one line on stderr with the
//! server's code and message.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine as _;
use serde_json::Value;

use super::client::Client;
use super::profile::ConnectionArgs;
use crate::attributes::{check_str_attr, parse_int_attr, Slot};
use crate::rules::{ADD_IMAGE_MAX_BYTES, SEARCH_IMAGE_MAX_BYTES};

#[derive(Debug, clap::Subcommand)]
pub enum DbCommand {
    /// Create a database (2-64 characters: lower-case letters, digits, _).
    Create { name: String },
    /// List the databases of this key pair.
    List,
    /// Delete a database and every image in it (irreversible).
    Delete { name: String },
}

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("image_source").required(true).args(["image", "url"]))]
pub struct AddArgs {
    /// A local JPEG or PNG file (uploaded as ImageContent; at most 2 MB).
    pub image: Option<PathBuf>,
    /// Instead of a file: the http(s) URL the server should fetch the image from.
    #[arg(long)]
    pub url: Option<String>,
    #[arg(long)]
    pub db: String,
    /// Entity (group) id: 1-64 characters, lower-case letters, digits, _.
    #[arg(long)]
    pub entity_id: String,
    /// Free text stored with the image (at most 512 characters).
    #[arg(long, default_value = "")]
    pub extra_data: String,
    /// An attribute to filter by later (repeatable): IntAttr…IntAttr4=NUMBER or
    /// StrAttr…StrAttr4=TEXT, e.g. --attr IntAttr=120 --attr StrAttr=red.
    #[arg(long = "attr", value_name = "NAME=VALUE", value_parser = parse_attr)]
    pub attrs: Vec<(String, String)>,
    #[command(flatten)]
    pub conn: ConnectionArgs,
}

/// `NAME=VALUE` of `--attr`, checked against the attribute rules before any upload.
fn parse_attr(arg: &str) -> Result<(String, String), String> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("{arg:?} is not NAME=VALUE (e.g. IntAttr=120 or StrAttr=red)"))?;
    let slot = Slot::all().find(|s| s.param_name() == name).ok_or_else(|| {
        format!("{name:?} is not an attribute: use IntAttr, IntAttr2…IntAttr4, StrAttr, StrAttr2…StrAttr4")
    })?;
    match slot {
        Slot::Int(_) => parse_int_attr(name, value).map(|_| ()),
        Slot::Str(_) => check_str_attr(name, value),
    }
    .map_err(|e| e.to_string())?;
    Ok((name.to_string(), value.to_string()))
}

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("image_source").required(true).args(["image", "url"]))]
pub struct SearchArgs {
    /// A local JPEG or PNG file (uploaded as ImageContent; at most 3 MB).
    pub image: Option<PathBuf>,
    /// Instead of a file: the http(s) URL of the query image.
    #[arg(long)]
    pub url: Option<String>,
    #[arg(long)]
    pub db: String,
    /// Number of results (1-1000).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Only images whose attributes pass this filter, e.g. "int_attr < 150 AND str_attr = 'red'".
    #[arg(long)]
    pub filter: Option<String>,
    #[command(flatten)]
    pub conn: ConnectionArgs,
}

/// A current-thread runtime for one call.
fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(rt.block_on(f))
}

pub fn run_db(conn: &ConnectionArgs, command: DbCommand) -> anyhow::Result<ExitCode> {
    let client = conn.client()?;
    let json = conn.json;
    block_on(async move {
        let (body, text) = match command {
            DbCommand::Create { name } => {
                let body = client.call("CreateImageDb", &[("Name", &name)]).await?;
                (body, format!("created database {name}\n"))
            }
            DbCommand::List => {
                let body = client.call("ListImageDbs", &[]).await?;
                let names: String = list(&body, "DbList")
                    .iter()
                    .map(|db| format!("{}\n", str_field(db, "Name")))
                    .collect();
                (body, names)
            }
            DbCommand::Delete { name } => {
                let body = client.call("DeleteImageDb", &[("Name", &name)]).await?;
                (body, format!("deleted database {name}\n"))
            }
        };
        if json {
            println!("{body}");
        } else {
            print!("{text}");
        }
        Ok(ExitCode::SUCCESS)
    })?
}

pub fn run_add(args: AddArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let image = image_param(
        args.image.as_deref(),
        args.url,
        ADD_IMAGE_MAX_BYTES,
        "AddImage",
    )?;
    block_on(async move {
        let (name, value) = image.as_param();
        let mut params: Vec<(&str, &str)> = vec![
            ("DbName", &args.db),
            ("EntityId", &args.entity_id),
            ("ExtraData", &args.extra_data),
            (name, value),
        ];
        params.extend(args.attrs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let body = client.call("AddImage", &params).await?;
        if args.conn.json {
            println!("{body}");
            return Ok(ExitCode::SUCCESS);
        }
        let id = body
            .pointer("/Data/DataId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        println!(
            "added DataId {id} (entity {}) to {}",
            args.entity_id, args.db
        );
        Ok(ExitCode::SUCCESS)
    })?
}

pub fn run_search(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let client: Client = args.conn.client()?;
    let image = image_param(
        args.image.as_deref(),
        args.url,
        SEARCH_IMAGE_MAX_BYTES,
        "SearchImage",
    )?;
    block_on(async move {
        let (name, value) = image.as_param();
        let limit = args.limit.to_string();
        let mut params: Vec<(&str, &str)> =
            vec![("DbName", &args.db), ("Limit", &limit), (name, value)];
        if let Some(f) = &args.filter {
            params.push(("Filter", f));
        }
        let body = client.call("SearchImage", &params).await?;
        if args.conn.json {
            println!("{body}");
        } else {
            print!("{}", match_table(list(&body, "MatchList")));
        }
        Ok(ExitCode::SUCCESS)
    })?
}

/// The image parameter of AddImage/SearchImage.
pub enum ImageParam {
    Url(String),
    Content(String),
}

impl ImageParam {
    pub fn as_param(&self) -> (&'static str, &str) {
        match self {
            ImageParam::Url(u) => ("ImageUrl", u),
            ImageParam::Content(c) => ("ImageContent", c),
        }
    }
}

fn image_param(
    file: Option<&Path>,
    url: Option<String>,
    cap: usize,
    action: &str,
) -> anyhow::Result<ImageParam> {
    match (file, url) {
        (_, Some(url)) => Ok(ImageParam::Url(url)),
        (Some(path), None) => Ok(ImageParam::Content(read_image_base64(path, cap, action)?)),
        (None, None) => anyhow::bail!("give an image file or --url"),
    }
}

/// Reads a local image and base64-encodes it, refusing files over `cap` before upload.
pub fn read_image_base64(path: &Path, cap: usize, action: &str) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() > cap {
        anyhow::bail!(
            "{} is {} bytes; {action} accepts at most {} MB",
            path.display(),
            bytes.len(),
            cap / (1024 * 1024)
        );
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn list<'a>(body: &'a Value, name: &str) -> &'a [Value] {
    body.get("Data")
        .and_then(|d| d.get(name))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn str_field<'a>(v: &'a Value, name: &str) -> &'a str {
    v.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// rank, score, entity, data id, extra data — aligned columns, extra data shortened.
pub fn match_table(matches: &[Value]) -> String {
    if matches.is_empty() {
        return "no matches (is the database empty?)\n".to_string();
    }
    let rows: Vec<[String; 5]> = matches
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let score = m.get("Score").and_then(Value::as_f64).unwrap_or(0.0);
            [
                (i + 1).to_string(),
                format!("{score:.3}"),
                str_field(m, "EntityId").to_string(),
                str_field(m, "DataId").to_string(),
                shorten(&str_field(m, "ExtraData").replace(['\n', '\t'], " "), 60),
            ]
        })
        .collect();
    let header = ["RANK", "SCORE", "ENTITY", "DATA ID", "EXTRA DATA"];
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 5]| {
        let mut l = format!(
            "{:>w0$}  {:>w1$}  {:<w2$}  {:<w3$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        );
        l.truncate(l.trim_end().len());
        out.push_str(&l);
        out.push('\n');
    };
    line(header);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
    out
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_is_aligned_and_ranked() {
        let t = match_table(&[
            json!({"DataId": "0000000000000002", "EntityId": "cat", "ExtraData": "a\nb", "Score": 10.0}),
            json!({"DataId": "0000000000000001", "EntityId": "long_entity", "ExtraData": "x".repeat(100), "Score": 7.25}),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(
            lines[0].starts_with("RANK") && lines[0].ends_with("EXTRA DATA"),
            "{t}"
        );
        assert!(
            lines[1].contains("1  10.000  cat") && lines[1].ends_with("a b"),
            "{t}"
        );
        assert!(
            lines[2].contains("2   7.250  long_entity") && lines[2].ends_with('…'),
            "{t}"
        );
        assert_eq!(match_table(&[]).lines().count(), 1);
    }

    #[test]
    fn attribute_arguments_are_checked_before_upload() {
        assert_eq!(
            parse_attr("IntAttr2=-7"),
            Ok(("IntAttr2".to_string(), "-7".to_string()))
        );
        assert_eq!(
            parse_attr("StrAttr=red=dark"),
            Ok(("StrAttr".to_string(), "red=dark".to_string()))
        );
        for (bad, words) in [
            ("IntAttr", "not NAME=VALUE"),
            ("Price=3", "not an attribute"),
            ("IntAttr=cheap", "whole number"),
            ("IntAttr5=1", "not an attribute"),
        ] {
            let e = parse_attr(bad).unwrap_err();
            assert!(e.contains(words), "{bad}: {e}");
        }
    }

    #[test]
    fn oversized_files_are_refused_before_upload() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.jpg");
        std::fs::write(&p, vec![0u8; 1025]).unwrap();
        let e = read_image_base64(&p, 1024, "AddImage")
            .unwrap_err()
            .to_string();
        assert!(e.contains("big.jpg") && e.contains("AddImage"), "{e}");
        std::fs::write(&p, b"hello").unwrap();
        assert_eq!(read_image_base64(&p, 1024, "AddImage").unwrap(), "aGVsbG8=");
    }
}
