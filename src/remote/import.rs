//! `imgsearch import DIR|MANIFEST.csv --db NAME`: adds many images through the API, `--jobs`
//! at a time, with a progress bar (rate, ETA) and a summary of failures and their reasons.
//!
//! Items: a directory gives every `.jpg`/`.jpeg`/`.png` under it (recursively, hidden
//! entries skipped, sorted), entity id = the file name without extension sanitised to the
//! EntityId rule, ExtraData = the path relative to DIR. A manifest is CSV with columns
//! `path,entity_id,extra_data` (a header row is optional; relative paths are relative to
//! the manifest; an empty entity id is derived from the file name).
//!
//! Resume: decided by the server, not by a state file. Before uploading, the importer
//! lists the database once and counts the (EntityId, ExtraData) pairs already in; an item
//! whose pair is there is skipped (each stored copy skips one item, so duplicate rows are
//! handled exactly). A re-run after an interruption therefore uploads only what is
//! missing, needs no writable data directory, and cannot be fooled by a stale state file.
//! Directory imports get a distinct ExtraData per file (its path) for this reason.
//!
//! A 503 ServiceUnavailable (the server's queue is full) or an unreachable server is
//! retried with exponential backoff; other errors fail that item only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use super::client::{Client, ClientError};
use super::commands::read_image_base64;
use super::profile::ConnectionArgs;
use crate::rules::{
    check_extra_data, is_valid_entity_id, ADD_IMAGE_MAX_BYTES, ENTITY_ID_MAX_LEN, ENTITY_ID_RULE,
};

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// A directory of images, or a CSV manifest with columns path,entity_id,extra_data.
    pub source: PathBuf,
    #[arg(long)]
    pub db: String,
    /// Uploads in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub jobs: u32,
    /// Create the database first when it does not exist.
    #[arg(long)]
    pub create_db: bool,
    /// Tries per image while the server answers 503 ServiceUnavailable.
    #[arg(long, default_value_t = 8)]
    pub retries: u32,
    #[command(flatten)]
    pub conn: ConnectionArgs,
}

/// One image to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub path: PathBuf,
    /// As the summary names it (relative path or manifest line).
    pub label: String,
    pub entity_id: String,
    pub extra_data: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading {path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("{path} line {line}: {reason}")]
    Manifest {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{0} holds no .jpg, .jpeg or .png files")]
    Empty(PathBuf),
}

pub fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let items = collect_items(&args.source)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(import(client, items, &args))
}

/// Reads the items of a directory or manifest.
pub fn collect_items(source: &Path) -> Result<Vec<Item>, ImportError> {
    let io = |e: std::io::Error| ImportError::Io {
        path: source.to_path_buf(),
        reason: e.to_string(),
    };
    let meta = std::fs::metadata(source).map_err(io)?;
    let items = if meta.is_dir() {
        let mut files = Vec::new();
        walk(source, &mut files)?;
        files.sort();
        files
            .into_iter()
            .map(|path| {
                let rel = path
                    .strip_prefix(source)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                Item {
                    entity_id: entity_id_from_path(&path),
                    extra_data: rel.clone(),
                    label: rel,
                    path,
                }
            })
            .collect()
    } else {
        let text = std::fs::read_to_string(source).map_err(io)?;
        parse_manifest(&text, source)?
    };
    if items.is_empty() {
        return Err(ImportError::Empty(source.to_path_buf()));
    }
    Ok(items)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ImportError> {
    let io = |e: std::io::Error| ImportError::Io {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = entry.file_type().map_err(io)?;
        if kind.is_dir() {
            walk(&path, out)?;
        } else if is_image_name(&path) {
            out.push(path);
        }
    }
    Ok(())
}

fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
}

/// The file name without extension, made to fit the EntityId rule: lower-case letters,
/// digits and `_` (anything else becomes `_`), at most 64 characters, never empty.
pub fn entity_id_from_path(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    sanitize_entity_id(&stem)
}

pub fn sanitize_entity_id(raw: &str) -> String {
    let mut id: String = raw
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .take(ENTITY_ID_MAX_LEN)
        .collect();
    if id.is_empty() {
        id.push_str("image");
    }
    id
}

/// Parses a CSV manifest (RFC 4180: quoted fields may hold commas, quotes doubled, line
/// breaks). Columns: path, entity_id (optional), extra_data (optional).
pub fn parse_manifest(text: &str, manifest: &Path) -> Result<Vec<Item>, ImportError> {
    let base = manifest.parent().unwrap_or(Path::new("."));
    let mut items = Vec::new();
    for (line, record) in parse_csv(text, manifest)? {
        let field = |i: usize| record.get(i).map(|s| s.trim()).unwrap_or("");
        if items.is_empty() && field(0).eq_ignore_ascii_case("path") {
            continue; // header
        }
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if record.len() > 3 {
            return Err(ImportError::Manifest {
                path: manifest.to_path_buf(),
                line,
                reason: format!(
                    "{} columns; expected path,entity_id,extra_data (quote fields that contain commas)",
                    record.len()
                ),
            });
        }
        let rel = PathBuf::from(field(0));
        let path = if rel.is_absolute() {
            rel
        } else {
            base.join(rel)
        };
        let entity_id = match field(1) {
            "" => entity_id_from_path(&path),
            given => given.to_string(),
        };
        items.push(Item {
            label: format!("line {line}: {}", field(0)),
            path,
            entity_id,
            extra_data: record.get(2).cloned().unwrap_or_default(),
        });
    }
    Ok(items)
}

/// (1-based starting line, fields) per record.
fn parse_csv(text: &str, path: &Path) -> Result<Vec<(usize, Vec<String>)>, ImportError> {
    let mut records = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let (mut line, mut start_line) = (1, 1);
    let mut in_quotes = false;
    let mut quoted_field = false;
    let mut chars = text.trim_start_matches('\u{feff}').chars().peekable();
    while let Some(c) = chars.next() {
        match (in_quotes, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => in_quotes = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
            (false, '"') if field.is_empty() && !quoted_field => {
                in_quotes = true;
                quoted_field = true;
            }
            (false, ',') => {
                fields.push(std::mem::take(&mut field));
                quoted_field = false;
            }
            (false, '\r') => {}
            (false, '\n') => {
                fields.push(std::mem::take(&mut field));
                records.push((start_line, std::mem::take(&mut fields)));
                quoted_field = false;
                line += 1;
                start_line = line;
            }
            (false, c) => field.push(c),
        }
    }
    if in_quotes {
        return Err(ImportError::Manifest {
            path: path.to_path_buf(),
            line: start_line,
            reason: "a quoted field is not closed".into(),
        });
    }
    if !field.is_empty() || !fields.is_empty() {
        fields.push(field);
        records.push((start_line, fields));
    }
    Ok(records)
}

/// How many of each (EntityId, ExtraData) the database already holds.
async fn existing(
    client: &Client,
    db: &str,
) -> Result<HashMap<(String, String), usize>, ClientError> {
    let mut counts = HashMap::new();
    for img in list_all(client, db).await? {
        let s = |k: &str| img.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        *counts.entry((s("EntityId"), s("ExtraData"))).or_insert(0) += 1;
    }
    Ok(counts)
}

/// Every record of the database, oldest first (ListImages pages of 1,000 with `Token`,
/// which stays correct past 2,000 and under concurrent writes).
pub async fn list_all(client: &Client, db: &str) -> Result<Vec<Value>, ClientError> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let mut params = vec![("DbName", db), ("Limit", "1000"), ("Order", "asc")];
        if !token.is_empty() {
            params.push(("Token", &token));
        }
        let mut body = client.call_with_retry("ListImages", &params, 8).await?;
        let next = body
            .pointer("/Data/Token")
            .and_then(Value::as_str)
            .map(str::to_string);
        let images = match body.pointer_mut("/Data/ImageList") {
            Some(Value::Array(list)) => std::mem::take(list),
            _ => Vec::new(),
        };
        let done = images.is_empty();
        all.extend(images);
        match next {
            Some(t) if !t.is_empty() && !done => token = t,
            _ => break,
        }
    }
    Ok(all)
}

/// Splits items into those to upload and the number already in (see the module doc).
pub fn plan(
    items: Vec<Item>,
    mut existing: HashMap<(String, String), usize>,
) -> (Vec<Item>, usize) {
    let mut todo = Vec::with_capacity(items.len());
    let mut skipped = 0;
    for item in items {
        match existing.get_mut(&(item.entity_id.clone(), item.extra_data.clone())) {
            Some(n) if *n > 0 => {
                *n -= 1;
                skipped += 1;
            }
            _ => todo.push(item),
        }
    }
    (todo, skipped)
}

async fn import(client: Client, items: Vec<Item>, args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let db = args.db.as_str();
    let present = match existing(&client, db).await {
        Ok(p) => p,
        Err(e)
            if args.create_db
                && e.code() == Some("InvalidParameter")
                && e.to_string().contains("does not exist") =>
        {
            client.call("CreateImageDb", &[("Name", db)]).await?;
            eprintln!("created database {db}");
            HashMap::new()
        }
        Err(e)
            if e.code() == Some("InvalidParameter") && e.to_string().contains("does not exist") =>
        {
            anyhow::bail!("{e}\n(create it with `imgsearch db create {db}`, or pass --create-db)")
        }
        Err(e) => return Err(e.into()),
    };
    let total = items.len();
    let (todo, skipped) = plan(items, present);
    eprintln!(
        "importing {} of {total} images into {db} ({skipped} already in), {} at a time",
        todo.len(),
        args.jobs
    );

    let bar = ProgressBar::with_draw_target(Some(todo.len() as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let started = Instant::now();
    let client = Arc::new(client);
    let mut set = tokio::task::JoinSet::new();
    let mut failures: Vec<(String, String)> = Vec::new();
    let mut added = 0usize;
    let mut handle = |res: Result<(String, Result<(), String>), tokio::task::JoinError>,
                      failures: &mut Vec<(String, String)>| {
        match res {
            Ok((_, Ok(()))) => added += 1,
            Ok((label, Err(reason))) => {
                bar.println(format!("failed: {label}: {reason}"));
                failures.push((label, reason));
            }
            Err(e) => failures.push(("(task)".into(), e.to_string())),
        }
        bar.inc(1);
    };
    for item in todo {
        while set.len() >= args.jobs as usize {
            if let Some(res) = set.join_next().await {
                handle(res, &mut failures);
            }
        }
        let (client, db, retries) = (client.clone(), db.to_string(), args.retries);
        set.spawn(async move {
            let label = item.label.clone();
            (label, add_one(&client, &db, item, retries).await)
        });
    }
    while let Some(res) = set.join_next().await {
        handle(res, &mut failures);
    }
    bar.finish_and_clear();

    let secs = started.elapsed().as_secs_f64();
    failures.sort();
    let code = if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if args.conn.json {
        let failed: Vec<Value> = failures
            .iter()
            .map(|(item, reason)| serde_json::json!({ "item": item, "reason": reason }))
            .collect();
        let summary = serde_json::json!({
            "imported": added, "skipped": skipped, "failed": failed, "total": total, "secs": secs,
        });
        println!("{summary}");
        return Ok(code);
    }
    println!(
        "imported {added}, skipped {skipped} (already in), failed {} of {total} in {secs:.1} s",
        failures.len()
    );
    if failures.is_empty() {
        return Ok(code);
    }
    println!("failures:");
    for (label, reason) in &failures {
        println!("  {label}: {reason}");
    }
    println!("(fix or remove these and run the same command again: what is in is skipped)");
    Ok(code)
}

/// Uploads one item; the error is the reason shown in the summary.
async fn add_one(client: &Client, db: &str, item: Item, retries: u32) -> Result<(), String> {
    if !is_valid_entity_id(&item.entity_id) {
        return Err(format!(
            "entity id \"{}\" is invalid: use {ENTITY_ID_RULE}",
            item.entity_id
        ));
    }
    check_extra_data(&item.extra_data).map_err(|e| e.to_string())?;
    let path = item.path.clone();
    let content = tokio::task::spawn_blocking(move || {
        read_image_base64(&path, ADD_IMAGE_MAX_BYTES, "AddImage").map_err(|e| format!("{e:#}"))
    })
    .await
    .map_err(|e| e.to_string())??;
    client
        .call_with_retry(
            "AddImage",
            &[
                ("DbName", db),
                ("EntityId", &item.entity_id),
                ("ExtraData", &item.extra_data),
                ("ImageContent", &content),
            ],
            retries,
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_ids_from_file_names() {
        assert_eq!(
            entity_id_from_path(Path::new("/a/Red Shoe-01.JPG")),
            "red_shoe_01"
        );
        assert_eq!(entity_id_from_path(Path::new("/a/.jpg")), "_jpg");
        assert_eq!(sanitize_entity_id("风景"), "__");
        assert_eq!(sanitize_entity_id(""), "image");
        assert_eq!(sanitize_entity_id(&"x".repeat(100)).len(), 64);
        assert!(is_valid_entity_id(&sanitize_entity_id("Ünïcode Name!")));
    }

    #[test]
    fn manifests_with_header_quotes_and_defaults() {
        let text = "path,entity_id,extra_data\r\na.jpg,sku_1,\"red, large\"\n/abs/B.png,,\"say \"\"hi\"\"\nthere\"\n\nc.jpg\n";
        let items = parse_manifest(text, Path::new("/data/m.csv")).unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].path, PathBuf::from("/data/a.jpg"));
        assert_eq!(items[0].entity_id, "sku_1");
        assert_eq!(items[0].extra_data, "red, large");
        assert_eq!(items[1].path, PathBuf::from("/abs/B.png"));
        assert_eq!(items[1].entity_id, "b");
        assert_eq!(items[1].extra_data, "say \"hi\"\nthere");
        assert_eq!(items[2].entity_id, "c");
        assert_eq!(items[2].extra_data, "");
        assert!(items[2].label.starts_with("line 6"), "{}", items[2].label);

        let e = parse_manifest("a.jpg,\"open\n", Path::new("m.csv")).unwrap_err();
        assert!(e.to_string().contains("not closed"), "{e}");
        let e = parse_manifest("a,b,c,d\n", Path::new("m.csv")).unwrap_err();
        assert!(e.to_string().contains("4 columns"), "{e}");
    }

    #[test]
    fn plan_skips_each_stored_copy_once() {
        let item = |e: &str, x: &str| Item {
            path: PathBuf::from(format!("{e}.jpg")),
            label: e.into(),
            entity_id: e.into(),
            extra_data: x.into(),
        };
        let items = vec![item("a", ""), item("a", ""), item("b", "1"), item("c", "")];
        let mut have = HashMap::new();
        have.insert(("a".to_string(), String::new()), 1);
        have.insert(("b".to_string(), "1".to_string()), 1);
        let (todo, skipped) = plan(items, have);
        assert_eq!(skipped, 2);
        assert_eq!(
            todo.iter()
                .map(|i| i.entity_id.as_str())
                .collect::<Vec<_>>(),
            ["a", "c"]
        );
    }

    #[test]
    fn directories_are_walked_sorted_without_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::create_dir_all(d.join(".hidden")).unwrap();
        for f in [
            "b.JPG",
            "a.png",
            "sub/c.jpeg",
            "notes.txt",
            ".x.jpg",
            ".hidden/d.jpg",
        ] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        let items = collect_items(d).unwrap();
        let labels: Vec<&str> = items.iter().map(|i| i.label.as_str()).collect();
        assert_eq!(labels, ["a.png", "b.JPG", "sub/c.jpeg"]);
        assert_eq!(items[2].entity_id, "c");
        assert_eq!(items[2].extra_data, "sub/c.jpeg");
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            collect_items(empty.path()),
            Err(ImportError::Empty(_))
        ));
    }
}
