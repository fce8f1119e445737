//! `imgsearch bench copies`: how well the service finds the original of an edited copy,
//! on pictures and edits chosen so that it cannot be tuned to.
//!
//! Database: the 1,000 ImageNet samples plus the wallpapers and photos of the Debian
//! package `mate-backgrounds` (`scripts/bench-pictures.sh`), each brought inside the API's
//! size rules and stored as JPEG quality 90, as an upload would be. Queries: `--queries`
//! database images drawn by `--seed` (every picture of the second source among them),
//! each `--variants` times under two or three edit families composed at random
//! (`compose`), saved as JPEG quality 90. Images go through the service's own preparation
//! (`service::prepare`) and networks; the fused ranking is `rules::fused_score`, as
//! SearchImage computes it over an exact index.
//!
//! Methods: `lite0` (semantic cosine, the service before copy detection), `sscd` (copy
//! cosine), `fused` (the service's Score), `phash` (64-bit DCT hash). Reported: recall@1 and
//! mAP overall and per family (a query counts for every family it contains), how many true
//! pairs reach the "same picture" score and how many non-copy pairs do (the false-match
//! rate), and a sweep of the copy threshold for choosing it. Choose on one seed, report
//! another.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use image_hasher::{HashAlg, HasherConfig};
use serde_json::json;

use super::compose::{apply_all, draw_families, Family};
use super::edits::{encode_jpeg, to_image, Rng};
use super::{fit_api, load_fitted, summarise};
use crate::bench::{list_images, round3};
use crate::config::ModelConfig;
use crate::embedding::{dot, DbDescriptors};
use crate::rules::{
    copy_similarity, fused_score, COPY_SEMANTIC_WEIGHT, SAME_PICTURE_SCORE, SAME_PICTURE_SIMILARITY,
};
use crate::service::prepare::{prepare, PrepareOptions};
use crate::vision::decode::RgbImage;
use crate::vision::embedder::{EmbedInput, EmbeddingBatcher};

#[derive(Debug, clap::Args)]
pub struct CopiesBench {
    /// First picture source (JPEG/PNG).
    #[arg(long, default_value = "../shared/datasets/imagenet-samples")]
    dir: PathBuf,
    /// Second picture source (`scripts/bench-pictures.sh` fetches it).
    #[arg(long, default_value = ".cache/bench/pictures")]
    extra_dir: PathBuf,
    /// Originals queried.
    #[arg(long, default_value_t = 300)]
    queries: usize,
    /// Edited copies per queried original.
    #[arg(long, default_value_t = 3)]
    variants: usize,
    /// Chooses the originals and every random part of the edits. Tune on one, report another.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Threads preparing images (decode, edit, resize) beside the network.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Images in the database for the SearchImage latency through the service (the bench's
    /// vectors repeated with small perturbations; 0 skips it).
    #[arg(long, default_value_t = 50_000)]
    index_size: usize,
    /// Research: extra copy descriptors per query (each image scored by its best), from
    /// transformed queries: `flip`, `rot` (±8°), `flip,rot`, `small` (the query at half size).
    #[arg(long, value_delimiter = ',')]
    query_tta: Vec<String>,
}

/// One prepared image's vectors.
struct Vectors {
    semantic: Vec<Vec<f32>>,
    copy: Vec<f32>,
    /// Queries with `--query-tta`: copy descriptors of transformed versions too.
    copy_extra: Vec<Vec<f32>>,
    /// Database images: the copy descriptor of the full uploaded image (the service makes
    /// the stored one from the thumbnail), for comparison.
    copy_from_full: Option<Vec<f32>>,
    phash: u64,
}

struct Query {
    original: usize,
    families: Vec<Family>,
    vectors: Vectors,
    /// The uploaded file (JPEG q90), for the SearchImage latency.
    jpeg: Vec<u8>,
}

pub fn run(config: &ModelConfig, b: CopiesBench) -> anyhow::Result<ExitCode> {
    let mut images = list_images(&b.dir)?;
    let first_source = images.len();
    let extra: Vec<PathBuf> = list_images(&b.extra_dir)
        .with_context(|| "run `bash scripts/bench-pictures.sh` first")?
        .into_iter()
        .filter(|p| {
            let ext = p.extension().map(|e| e.to_ascii_lowercase());
            matches!(
                ext.as_deref().and_then(|e| e.to_str()),
                Some("jpg" | "jpeg" | "png")
            )
        })
        .collect();
    // Pictures with no content once decoded (transparent overlays composited over white:
    // seven of mate-backgrounds' are) are one blank picture several times, not distinct
    // originals; they are left out and listed.
    let mut blank = Vec::new();
    for p in extra {
        let img = load_fitted(&p)?;
        if luma_spread(&img) < 2.0 {
            blank.push(
                p.file_name()
                    .map_or(String::new(), |f| f.to_string_lossy().into_owned()),
            );
        } else {
            images.push(p);
        }
    }
    let n = images.len();
    // Originals: every picture of the second source, then ImageNet by a seeded shuffle.
    let mut rng = Rng::new(b.seed);
    let mut order: Vec<usize> = (0..first_source).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut originals: Vec<usize> = (first_source..n).collect();
    originals.extend(
        order
            .into_iter()
            .take(b.queries.saturating_sub(n - first_source)),
    );
    originals.sort_unstable();

    let nets = config.load_models()?;
    let batcher = EmbeddingBatcher::start_many(nets, config.batcher(64));
    anyhow::ensure!(
        batcher.has_copy_model(),
        "the copy-detection model is not loaded (run scripts/setup.sh)"
    );
    let hasher = HasherConfig::new()
        .hash_alg(HashAlg::Mean)
        .preproc_dct()
        .hash_size(8, 8)
        .to_hasher();
    let embed = |img: &RgbImage, stored: bool| -> anyhow::Result<Vectors> {
        let bytes = encode_jpeg(img, 90)?;
        let opts = PrepareOptions {
            stored,
            copy: true,
            copy_from_thumbnail: true,
            region: None,
            crop: false,
        };
        let p = prepare(&bytes, &opts).map_err(|e| anyhow::anyhow!("{e}"))?;
        let first = batcher.submit_wait(EmbedInput {
            tensor: p.tensor,
            copy: p.copy,
        })?;
        let second = p.untrimmed.map(|t| batcher.submit_wait(t)).transpose()?;
        let full = match &p.thumbnail {
            Some(_) => {
                let decoded = crate::vision::decode::decode(&bytes, &Default::default())?;
                let trimmed = crate::vision::borders::trim(&decoded);
                let input =
                    crate::vision::copy_model::copy_input(trimmed.as_ref().unwrap_or(&decoded))?;
                let zeros = vec![0f32; crate::vision::preprocess::INPUT_LEN];
                Some(batcher.submit_wait(EmbedInput {
                    tensor: zeros,
                    copy: Some(input),
                })?)
            }
            None => None,
        };
        let first = first.wait()?;
        let copy_from_full = full.map(|t| t.wait()).transpose()?.and_then(|i| i.copy);
        let mut semantic = vec![first.embedding];
        if let Some(t) = second {
            semantic.push(t.wait()?.embedding);
        }
        let hash = hasher.hash_image(&to_image(img));
        let phash = hash
            .as_bytes()
            .iter()
            .take(8)
            .enumerate()
            .fold(0u64, |acc, (i, b)| acc | (u64::from(*b) << (8 * i)));
        Ok(Vectors {
            semantic,
            copy: first.copy.context("no copy descriptor")?,
            copy_extra: Vec::new(),
            copy_from_full,
            phash,
        })
    };

    let started = Instant::now();
    let db: Mutex<Vec<Option<Vectors>>> = Mutex::new((0..n).map(|_| None).collect());
    let queries: Mutex<Vec<Query>> = Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..b.workers.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n || failed.lock().map(|f| f.is_some()).unwrap_or(true) {
                    return;
                }
                let work = || -> anyhow::Result<()> {
                    let base = load_fitted(&images[i])?;
                    let v = embed(&base, true)?;
                    if let Ok(mut db) = db.lock() {
                        db[i] = Some(v);
                    }
                    if originals.binary_search(&i).is_err() {
                        return Ok(());
                    }
                    for k in 0..b.variants {
                        let mut rng =
                            Rng::new(b.seed.wrapping_mul(0x9E37) ^ ((i as u64) << 16) ^ k as u64);
                        let families = draw_families(&mut rng);
                        let edited = fit_api(&apply_all(&base, &families, &mut rng)?)?;
                        let mut vectors = embed(&edited, false)?;
                        for t in &b.query_tta {
                            let variants: Vec<RgbImage> = match t.as_str() {
                                "flip" => vec![super::edits::from_image(
                                    image::imageops::flip_horizontal(&to_image(&edited)),
                                )],
                                "rot" => vec![
                                    super::edits::rotate(&edited, 8f64.to_radians(), [0; 3]),
                                    super::edits::rotate(&edited, -8f64.to_radians(), [0; 3]),
                                ],
                                "small" => vec![crate::vision::preprocess::resize(
                                    &edited,
                                    (edited.width / 2).max(130),
                                    (edited.height / 2).max(130),
                                )?],
                                other => anyhow::bail!("unknown --query-tta {other}"),
                            };
                            for v in variants {
                                let extra = embed(&v, false)?;
                                vectors.copy_extra.push(extra.copy);
                            }
                        }
                        let jpeg = encode_jpeg(&edited, 90)?;
                        if let Ok(mut q) = queries.lock() {
                            q.push(Query {
                                original: i,
                                families,
                                vectors,
                                jpeg,
                            });
                        }
                    }
                    Ok(())
                };
                if let Err(e) = work() {
                    if let Ok(mut f) = failed.lock() {
                        f.get_or_insert(e.context(format!("{}", images[i].display())));
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().ok().flatten() {
        return Err(e);
    }
    let db: Vec<Vectors> = db
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a worker panicked"))?
        .into_iter()
        .collect::<Option<_>>()
        .context("an image was not embedded")?;
    let mut queries = queries
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a worker panicked"))?;
    queries.sort_by_key(|q| q.original);
    let prep_s = started.elapsed().as_secs_f64();

    // Scores of every (query, database image) pair under each method.
    // `sum_*`: research rankings (copy cosine + w · semantic cosine) beside the Score.
    // `*_full_stored`: the database's copy descriptors made from the full uploads instead
    // of their thumbnails; `sum_0.5`: a heavier semantic weight; both for comparison.
    const METHODS: [&str; 7] = [
        "lite0",
        "sscd",
        "fused",
        "phash",
        "sscd_full_stored",
        "fused_full_stored",
        "sum_0.5",
    ];
    let mut ranks: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut by_source: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    // The service Score's misses, to read.
    let mut misses = Vec::new();
    let mut by_family: BTreeMap<(&str, Family), Vec<usize>> = BTreeMap::new();
    let (mut true_copy, mut best_other_copy) = (Vec::new(), Vec::new());
    let (mut true_fused, mut other_fused_hits, mut other_pairs) = (Vec::new(), 0usize, 0usize);
    let mut queries_with_false_match = 0usize;
    for q in &queries {
        let sem = |j: usize| {
            q.vectors
                .semantic
                .iter()
                .flat_map(|a| db[j].semantic.iter().map(move |b| dot(a, b)))
                .fold(f32::NEG_INFINITY, f32::max)
        };
        let cop = |j: usize| {
            q.vectors
                .copy_extra
                .iter()
                .map(|e| dot(e, &db[j].copy))
                .fold(dot(&q.vectors.copy, &db[j].copy), f32::max)
        };
        let scores: Vec<[f32; 7]> = (0..n)
            .map(|j| {
                let (s, c) = (sem(j), cop(j));
                let hamming = (q.vectors.phash ^ db[j].phash).count_ones() as f32;
                let ct = db[j]
                    .copy_from_full
                    .as_ref()
                    .map_or(f32::NAN, |t| dot(&q.vectors.copy, t));
                [
                    s,
                    c,
                    fused_score(DbDescriptors::Both, Some(s), Some(c)),
                    -hamming,
                    ct,
                    fused_score(DbDescriptors::Both, Some(s), Some(ct)),
                    c + 0.5 * s,
                ]
            })
            .collect();
        for (m, name) in METHODS.iter().enumerate() {
            let target = scores[q.original][m];
            let rank = 1
                + (0..n)
                    .filter(|&j| j != q.original && scores[j][m] >= target)
                    .count();
            ranks.entry(name).or_default().push(rank);
            let source = if q.original < first_source {
                "first"
            } else {
                "second"
            };
            by_source.entry((name, source)).or_default().push(rank);
            if *name == "fused" && rank > 1 {
                let best = (0..n)
                    .filter(|&j| j != q.original)
                    .max_by(|&a, &b| scores[a][m].total_cmp(&scores[b][m]))
                    .unwrap_or(q.original);
                let file = |i: usize| {
                    images[i]
                        .file_name()
                        .map_or(String::new(), |f| f.to_string_lossy().into_owned())
                };
                misses.push(json!({
                    "original": file(q.original),
                    "families": q.families.iter().map(|f| f.name()).collect::<Vec<_>>(),
                    "rank": rank,
                    "score": round3(f64::from(target)),
                    "ranked_first": file(best),
                    "first_score": round3(f64::from(scores[best][m])),
                }));
            }
            for &f in &q.families {
                by_family.entry((name, f)).or_default().push(rank);
            }
        }
        let sim = |j: usize| copy_similarity(scores[j][1], Some(scores[j][0]));
        true_copy.push(sim(q.original));
        true_fused.push(scores[q.original][2]);
        let others = (0..n).filter(|&j| j != q.original);
        best_other_copy.push(others.clone().map(sim).fold(f32::MIN, f32::max));
        let false_hits = others
            .filter(|&j| scores[j][2] >= SAME_PICTURE_SCORE)
            .count();
        other_fused_hits += false_hits;
        other_pairs += n - 1;
        queries_with_false_match += usize::from(false_hits > 0);
    }

    let q = queries.len().max(1) as f64;
    let mut methods = serde_json::Map::new();
    for name in METHODS {
        let (r1, map) = summarise(&ranks[name]);
        let mut families = serde_json::Map::new();
        for f in Family::ALL {
            if let Some(r) = by_family.get(&(name, f)) {
                let (r1, map) = summarise(r);
                families.insert(
                    f.name().into(),
                    json!({"recall_at_1": round3(r1), "map": round3(map), "queries": r.len()}),
                );
            }
        }
        // Recall@1 over the queries of each picture source (ImageNet photos; wallpapers).
        let sources: serde_json::Map<String, serde_json::Value> = ["first", "second"]
            .into_iter()
            .filter_map(|src| {
                let r = by_source.get(&(name, src))?;
                Some((
                    src.to_string(),
                    json!({"recall_at_1": round3(summarise(r).0), "queries": r.len()}),
                ))
            })
            .collect();
        methods.insert(
            name.into(),
            json!({"recall_at_1": round3(r1), "map": round3(map), "sources": sources, "families": families}),
        );
    }
    // Threshold sweep on the copy similarity: true pairs reaching it (recall) and queries
    // whose best non-copy reaches it (false alarms).
    let sweep: Vec<_> = (0..=20)
        .map(|i| 0.35 + 0.025 * i as f32)
        .map(|t| {
            let recall = true_copy.iter().filter(|&&c| c >= t).count() as f64 / q;
            let false_alarm = best_other_copy.iter().filter(|&&c| c >= t).count() as f64 / q;
            json!({"copy_similarity": round3(f64::from(t)), "true_pairs_at_or_above": round3(recall), "queries_with_a_non_copy_at_or_above": round3(false_alarm)})
        })
        .collect();
    drop(batcher);
    let latency = if b.index_size > 0 {
        let files: Vec<&[u8]> = queries.iter().take(60).map(|q| q.jpeg.as_slice()).collect();
        service_latency(config, &db, &files, b.index_size)?
    } else {
        serde_json::Value::Null
    };
    let same = true_fused
        .iter()
        .filter(|&&s| s >= SAME_PICTURE_SCORE)
        .count() as f64
        / q;
    println!(
        "{}",
        json!({
            "bench": "copies",
            "seed": b.seed,
            "database_images": n,
            "second_source_images": n - first_source,
            "blank_images_left_out": blank,
            "queries": queries.len(),
            "variants_per_original": b.variants,
            "prepare_and_embed_s": round3(prep_s),
            "methods": methods,
            "same_picture": {
                "score": SAME_PICTURE_SCORE,
                "copy_similarity": SAME_PICTURE_SIMILARITY,
                "semantic_weight": COPY_SEMANTIC_WEIGHT,
                "true_pairs_at_or_above": round3(same),
                "non_copy_pairs_at_or_above": other_fused_hits as f64 / other_pairs.max(1) as f64,
                "queries_with_a_false_match": round3(queries_with_false_match as f64 / q),
            },
            "copy_threshold_sweep": sweep,
            "search_image_ms": latency,
            "fused_misses": misses,
        })
    );
    Ok(ExitCode::SUCCESS)
}

/// SearchImage end to end through `ImageService` (decode, trim, both networks, both indexes,
/// fusion, record lookup), sequentially, over a temporary store of `size` images whose
/// vectors are the bench database's repeated with small perturbations, indexed as `serve`
/// indexes them (ANN from 20,000 images). Returns p50/p90 in ms over `files`.
fn service_latency(
    config: &ModelConfig,
    db: &[Vectors],
    files: &[&[u8]],
    size: usize,
) -> anyhow::Result<serde_json::Value> {
    use crate::fetch::{FetchConfig, ImageFetcher};
    use crate::service::images::{ImageService, ImageSource, Part, SearchImage, SearchQuery};
    use crate::service::list_token::ListTokenKey;
    use crate::service::IndexSettings;
    use crate::store::{DbRef, ImageStore, NewImage, SqliteStore};
    use std::sync::Arc;

    let scratch = crate::bench::scratch_dir("copies", None)?;
    let dir = scratch.path();
    let store = SqliteStore::open(dir)?;
    let dbref = DbRef::new("bench", "copies");
    store.create_db(dbref)?;
    let mut rng = Rng::new(11);
    let mut jitter = |v: &[f32], exact: bool| {
        let mut out: Vec<f32> = v
            .iter()
            .map(|x| {
                if exact {
                    *x
                } else {
                    x + (rng.below(1000) as f32 / 1000.0 - 0.5) * 0.01
                }
            })
            .collect();
        crate::embedding::l2_normalize(&mut out);
        out
    };
    let started = Instant::now();
    let mut k = 0usize;
    while k < size {
        let n = (size - k).min(1000);
        let rows: Vec<(String, Vec<f32>, Vec<f32>)> = (k..k + n)
            .map(|i| {
                let src = &db[i % db.len()];
                let exact = i < db.len();
                (
                    format!("e{i}"),
                    jitter(&src.semantic[0], exact),
                    jitter(&src.copy, exact),
                )
            })
            .collect();
        let batch: Vec<NewImage<'_>> = rows
            .iter()
            .map(|(e, s, c)| NewImage {
                entity_id: e,
                extra_data: "",
                image_url: "",
                embedding: s,
                copy_embedding: Some(c),
                thumbnail: None,
                attributes: &crate::store::Attributes::NONE,
            })
            .collect();
        store.add_images(dbref, &batch)?;
        k += n;
    }
    let fill_s = started.elapsed().as_secs_f64();
    let embedder = Arc::new(EmbeddingBatcher::start_many(
        config.load_models()?,
        config.batcher(256),
    ));
    let started = Instant::now();
    let service = ImageService::start(
        Arc::new(store),
        ImageFetcher::new(FetchConfig::default())?,
        embedder,
        ListTokenKey::generate()?,
        IndexSettings::in_data_dir(dir),
    )?;
    let open_s = started.elapsed().as_secs_f64();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut times = Vec::new();
    for (round, bytes) in files.iter().chain(files.iter().take(5)).enumerate() {
        let t = Instant::now();
        let matches = rt.block_on(service.search_image(
            "bench",
            SearchImage {
                db: "copies".into(),
                query: SearchQuery::Image(ImageSource::Bytes(bytes.to_vec())),
                limit: 10,
                min_score: None,
                distinct_entity: false,
                filter: None,
                part: Part::Whole,
            },
        ))?;
        std::hint::black_box(matches);
        if round >= 5 {
            // The first five are warm-up (repeated at the end to keep the count).
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((times.len() as f64 - 1.0) * q).round() as usize;
        round3(times.get(i).copied().unwrap_or(f64::NAN))
    };
    Ok(json!({
        "images": size,
        "queries": times.len(),
        "store_fill_s": round3(fill_s),
        "index_open_s": round3(open_s),
        "p50": at(0.5),
        "p90": at(0.9),
    }))
}

/// Standard deviation of the luma (BT.601) over the pixels: ~0 for a blank picture.
fn luma_spread(img: &RgbImage) -> f64 {
    let lumas: Vec<f64> = img
        .pixels
        .chunks_exact(3)
        .map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
        .collect();
    let n = lumas.len().max(1) as f64;
    let mean = lumas.iter().sum::<f64>() / n;
    (lumas.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / n).sqrt()
}
