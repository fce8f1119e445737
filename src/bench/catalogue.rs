//! `imgsearch bench catalogue`: writes a large synthetic database into a data directory the
//! server opens as it is — N images with a thumbnail, a semantic vector (clustered, as in
//! `bench index`) and a copy descriptor each, every `--copy-every`-th image a near copy of
//! the one before (both vectors nudged, as an edited re-upload would be) — so that what a
//! user does with a big catalogue can be timed against a real server: the console's page
//! load and `imgsearch dedup` (`scripts/bench-scale.sh` runs both). Writing goes through
//! the real store (`add_images`, 1,000 per transaction).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;

use super::index::clustered;
use crate::embedding::{l2_normalize, DbDescriptors, COPY_DIM, EMBEDDING_DIM};
use crate::store::{Attributes, DbRef, ImageStore, NewImage, SqliteStore};

#[derive(Debug, clap::Args)]
pub struct CatalogueBench {
    /// The server's data directory (created if needed).
    #[arg(long)]
    data: PathBuf,
    /// The tenant (access key id) that owns the database.
    #[arg(long)]
    tenant: String,
    #[arg(long, default_value = "catalogue")]
    db: String,
    #[arg(long, default_value_t = 100_000)]
    images: usize,
    /// Every N-th image is a near copy of the one before (0: none).
    #[arg(long, default_value_t = 50)]
    copy_every: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// A small JPEG, its colours a function of `i`, so that pages of the console differ.
fn thumbnail(i: usize) -> anyhow::Result<Vec<u8>> {
    let (w, h) = (192u32, 144u32);
    let (r, g) = ((i * 37 % 200) as u8, (i * 91 % 200) as u8);
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            r.wrapping_add((x / 4) as u8),
            g.wrapping_add((y / 3) as u8),
            120,
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 60)
        .encode(&img, w, h, image::ExtendedColorType::Rgb8)
        .context("encoding a thumbnail")?;
    Ok(out)
}

/// Unit Gaussian-ish vectors (sum of three uniforms per component).
fn random_unit(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let mut v: Vec<f32> = (0..n * dim).map(|_| next() + next() + next()).collect();
    for row in v.chunks_exact_mut(dim) {
        l2_normalize(row);
    }
    v
}

/// `row` moved towards `noise` by `amount` and renormalised: a near copy.
fn nudge(row: &mut [f32], noise: &[f32], amount: f32) {
    for (x, n) in row.iter_mut().zip(noise) {
        *x += amount * n;
    }
    l2_normalize(row);
}

pub fn run(b: CatalogueBench) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&b.data)?;
    let store = SqliteStore::open(&b.data).context("opening the store")?;
    let db = DbRef::new(&b.tenant, &b.db);
    if store.get_db(db)?.is_none() {
        store.create_db_with(db, DbDescriptors::Both)?;
    }
    let have = store.get_db(db)?.map_or(0, |d| d.image_count as usize);
    let started = Instant::now();
    let (mut copies, mut done) = (0usize, have);
    while done < b.images {
        let n = (b.images - done).min(1000);
        let seed = b.seed.wrapping_mul(1_000_003).wrapping_add(done as u64);
        let mut semantic = clustered(n, EMBEDDING_DIM, seed);
        let mut copy = random_unit(n, COPY_DIM, seed ^ 0xC0FF);
        let noise_s = random_unit(n, EMBEDDING_DIM, seed ^ 0xA11);
        let noise_c = random_unit(n, COPY_DIM, seed ^ 0xB22);
        for j in 1..n {
            if b.copy_every > 0 && (done + j) % b.copy_every == 0 {
                let (prev, cur) = semantic.split_at_mut(j * EMBEDDING_DIM);
                cur[..EMBEDDING_DIM].copy_from_slice(&prev[(j - 1) * EMBEDDING_DIM..]);
                nudge(
                    &mut cur[..EMBEDDING_DIM],
                    &noise_s[j * EMBEDDING_DIM..][..EMBEDDING_DIM],
                    0.1,
                );
                let (prev, cur) = copy.split_at_mut(j * COPY_DIM);
                cur[..COPY_DIM].copy_from_slice(&prev[(j - 1) * COPY_DIM..]);
                nudge(
                    &mut cur[..COPY_DIM],
                    &noise_c[j * COPY_DIM..][..COPY_DIM],
                    0.15,
                );
                copies += 1;
            }
        }
        let names: Vec<(String, String)> = (done..done + n)
            .map(|i| (format!("sku_{i:07}"), format!("synthetic item {i}")))
            .collect();
        let thumbs: Vec<Vec<u8>> = (done..done + n).map(thumbnail).collect::<Result<_, _>>()?;
        let batch: Vec<NewImage<'_>> = (0..n)
            .map(|j| NewImage {
                entity_id: &names[j].0,
                extra_data: &names[j].1,
                image_url: "",
                embedding: &semantic[j * EMBEDDING_DIM..][..EMBEDDING_DIM],
                copy_embedding: Some(&copy[j * COPY_DIM..][..COPY_DIM]),
                thumbnail: Some(&thumbs[j]),
                attributes: &Attributes::NONE,
            })
            .collect();
        store.add_images(db, &batch)?;
        done += n;
    }
    println!(
        "{}",
        json!({
            "data": b.data, "tenant": b.tenant, "db": b.db, "images": b.images,
            "added": b.images.saturating_sub(have), "near_copies_planted": copies,
            "fill_s": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        })
    );
    Ok(ExitCode::SUCCESS)
}
