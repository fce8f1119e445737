//! `imgsearch export --db NAME DIR`: writes what `imgsearch import` reads back — DIR/
//! `manifest.csv` (`path,entity_id,extra_data`) and DIR/`images/{DataId}.jpg`, each image's
//! stored picture (GetThumbnail) — through the API, so it works against any server.
//!
//! What it is: a portable copy of a catalogue (its EntityIds, ExtraData and a picture of
//! each image) to move it to another database or server. What it is not: a backup. The
//! server keeps 256-px thumbnails, not the uploaded originals, so a re-imported image is
//! embedded from its thumbnail (close to, not exactly, the original's vectors), and a
//! thumbnail whose short side is 128 px or less — a picture more than twice as long as it
//! is wide — is enlarged to a short side of 129 px, the least AddImage accepts.
//! Attributes are not exported (import sets none). For an exact copy of a server use
//! `imgsearch backup`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use base64::Engine as _;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::client::Client;
use super::dedup::csv_field;
use super::import::list_all;
use super::profile::ConnectionArgs;
use crate::rules::{MAX_SIDE_EXCLUSIVE, MIN_SIDE_EXCLUSIVE};

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[arg(long)]
    pub db: String,
    /// Directory to write manifest.csv and images/ into (created; must not hold a
    /// manifest already).
    pub dir: PathBuf,
    /// Thumbnails fetched at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: u32,
    #[command(flatten)]
    pub conn: ConnectionArgs,
}

/// What became of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exported {
    /// Written as it is stored.
    AsStored,
    /// Enlarged so that import accepts it.
    Enlarged { from: (u32, u32), to: (u32, u32) },
}

/// The JPEG AddImage accepts for a stored thumbnail: the same bytes when both sides are
/// within the API's bounds, else enlarged (Lanczos) to a short side of 129 px. A shape no
/// enlargement fits (the long side would pass 1,023 px) is an error.
pub fn importable_jpeg(jpeg: Vec<u8>) -> anyhow::Result<(Vec<u8>, Exported)> {
    let img = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
        .context("the stored thumbnail is not a JPEG")?
        .to_rgb8();
    let (w, h) = img.dimensions();
    let min_side = MIN_SIDE_EXCLUSIVE + 1;
    if w.min(h) >= min_side && w.max(h) < MAX_SIDE_EXCLUSIVE {
        return Ok((jpeg, Exported::AsStored));
    }
    let scale = f64::from(min_side) / f64::from(w.min(h).max(1));
    let (nw, nh) = (
        ((f64::from(w) * scale).ceil() as u32).max(min_side),
        ((f64::from(h) * scale).ceil() as u32).max(min_side),
    );
    if nw.max(nh) >= MAX_SIDE_EXCLUSIVE {
        anyhow::bail!(
            "its thumbnail is {w}×{h} px: no size keeps each side within the API's \
             {MIN_SIDE_EXCLUSIVE}–{MAX_SIDE_EXCLUSIVE} px (exclusive)"
        );
    }
    let big = image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Lanczos3);
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode(&big, nw, nh, image::ExtendedColorType::Rgb8)
        .context("encoding the enlarged thumbnail")?;
    Ok((
        out,
        Exported::Enlarged {
            from: (w, h),
            to: (nw, nh),
        },
    ))
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let manifest = args.dir.join("manifest.csv");
    if manifest.exists() {
        anyhow::bail!(
            "{} exists; export into a new or empty directory",
            manifest.display()
        );
    }
    let images_dir = args.dir.join("images");
    std::fs::create_dir_all(&images_dir)
        .with_context(|| format!("creating {}", images_dir.display()))?;
    let client = args.conn.client()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let started = Instant::now();
    let records = rt.block_on(list_all(&client, &args.db))?;
    let results = rt.block_on(fetch_all(client, &args, &records, &images_dir));
    let mut csv = String::from("path,entity_id,extra_data\n");
    let (mut enlarged, mut failed) = (0usize, 0usize);
    for (record, result) in records.iter().zip(results) {
        let id = str_of(record, "DataId");
        match result {
            Ok(how) => {
                if matches!(how, Exported::Enlarged { .. }) {
                    enlarged += 1;
                }
                csv.push_str(&format!(
                    "{},{},{}\n",
                    csv_field(&format!("images/{id}.jpg")),
                    csv_field(str_of(record, "EntityId")),
                    csv_field(str_of(record, "ExtraData"))
                ));
            }
            Err(e) => {
                failed += 1;
                eprintln!(
                    "export: DataId {id} ({}): {e:#}",
                    str_of(record, "EntityId")
                );
            }
        }
    }
    write_atomically(&manifest, csv.as_bytes())?;
    eprintln!(
        "export: {} of {} images to {} ({enlarged} enlarged to import's minimum size, \
         {failed} failed) in {:.1} s; read back with `imgsearch import {} --db NAME`",
        records.len() - failed,
        records.len(),
        args.dir.display(),
        started.elapsed().as_secs_f64(),
        manifest.display()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Fetches and writes every record's picture, `--jobs` at a time; results in record order.
async fn fetch_all(
    client: Client,
    args: &ExportArgs,
    records: &[Value],
    images_dir: &Path,
) -> Vec<anyhow::Result<Exported>> {
    let gate = Arc::new(Semaphore::new(args.jobs as usize));
    let mut set = tokio::task::JoinSet::new();
    for (i, record) in records.iter().enumerate() {
        let id = str_of(record, "DataId").to_string();
        let (client, gate, db) = (client.clone(), gate.clone(), args.db.clone());
        let path = images_dir.join(format!("{id}.jpg"));
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            (i, export_one(&client, &db, &id, &path).await)
        });
    }
    let mut out: Vec<Option<anyhow::Result<Exported>>> = (0..records.len()).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, r)) => out[i] = Some(r),
            Err(e) => tracing::error!("an export task failed: {e}"),
        }
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("the export task did not finish"))))
        .collect()
}

async fn export_one(client: &Client, db: &str, id: &str, path: &Path) -> anyhow::Result<Exported> {
    let body = client
        .call_with_retry("GetThumbnail", &[("DbName", db), ("DataId", id)], 8)
        .await?;
    let b64 = body
        .pointer("/Data/ImageContent")
        .and_then(Value::as_str)
        .context("GetThumbnail answered without Data.ImageContent")?;
    let jpeg = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .context("GetThumbnail's ImageContent is not base64")?;
    let (jpeg, how) = tokio::task::spawn_blocking(move || importable_jpeg(jpeg)).await??;
    write_atomically(path, &jpeg)?;
    Ok(how)
}

/// Temp file, then rename: an interrupted export leaves no half-written file.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
            .encode(&img, w, h, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    #[test]
    fn thumbnails_within_the_rules_are_kept_byte_for_byte() {
        let t = jpeg(256, 192);
        let (out, how) = importable_jpeg(t.clone()).unwrap();
        assert_eq!((out, how), (t, Exported::AsStored));
    }

    #[test]
    fn narrow_thumbnails_are_enlarged_to_the_least_accepted_size() {
        let (out, how) = importable_jpeg(jpeg(256, 100)).unwrap();
        assert_eq!(
            how,
            Exported::Enlarged {
                from: (256, 100),
                to: (331, 129)
            }
        );
        let img = image::load_from_memory(&out).unwrap();
        assert_eq!((img.width(), img.height()), (331, 129));
        // 256×20 would need a long side of 1,651 px: refused, saying why.
        let e = importable_jpeg(jpeg(256, 20)).unwrap_err();
        assert!(e.to_string().contains("no size keeps each side"), "{e}");
    }
}
