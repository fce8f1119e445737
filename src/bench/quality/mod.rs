//! `imgsearch bench quality`: how well search finds edited copies.
//!
//! Database: every image of `--dir` (the 1,000 ImageNet samples), first brought inside the
//! API's size rules (fit within 800×800 keeping the aspect ratio; images whose shorter side
//! would be ≤ 128 px are scaled up so it is 129) and stored as JPEG quality 90, as an
//! upload would be. Queries: `--queries` database images chosen by `--seed`, each under
//! every edit of [`edits::Edit`] (definitions there and in README), saved as JPEG quality
//! 90 (the JPEG-20 edit is already a JPEG). Each query is ranked against the whole
//! database; with one relevant image per query, recall@1 is the share ranked first and
//! mAP the mean reciprocal rank of the original.
//!
//! Methods, all from the same network runs: the plain pooled embedding (what the service
//! used before), a 64-bit pHash (`image_hasher`, DCT + mean, Hamming distance), and the
//! descriptors of `descriptor` at 224 and 320 px input, with and without flip
//! aggregation; and the subject crop of `Crop=true` on the query side (`subject`: the
//! subject model's box embedded beside the whole image, the better score kept). The run
//! also times the network per query for each input configuration, the subject model, and
//! the exact index at 50,000 images, since a method only pays if search stays fast.

pub mod compose;
pub mod copies;
mod descriptor;
mod edits;
mod methods;
mod subject;
mod timing;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use image_hasher::{HashAlg, HasherConfig};
use serde_json::json;

use self::edits::{apply, jpeg_round_trip, to_image, Edit, Rng};
use self::methods::{compose, METHODS};
use self::subject::{Crops, SubjectCrops, GRID};
use self::timing::{search_p50, service_latency, time_ms};
use super::round3;
use crate::config::ModelConfig;
use crate::embedding::dot;
use crate::vision::borders;
use crate::vision::decode::{self, DecodeLimits, RgbImage};
use crate::vision::model::{build_graph_with, EfficientNet, ModelOptions};
use crate::vision::onnx::GraphSpec;
use crate::vision::preprocess::{resize, write_input_tensor_sized};

#[derive(Debug, clap::Args)]
pub struct QualityBench {
    /// Database images (JPEG/PNG).
    #[arg(long, default_value = "../shared/datasets/imagenet-samples")]
    dir: PathBuf,
    /// Database images queried (each under every edit).
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Chooses the queried images and the random parts of the edits.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Query only images that `--seed N` (same `--queries`) does not: a report split
    /// disjoint from the split a setting was chosen on.
    #[arg(long)]
    disjoint_from: Option<u64>,
    /// Intra-op threads of the network.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Images in the synthetic index for the search-time figures.
    #[arg(long, default_value_t = 50_000)]
    index_size: usize,
    /// Skip the end-to-end SearchImage latency (a temporary store of `index_size` images
    /// searched through the service, as `serve` runs it).
    #[arg(long)]
    no_service: bool,
    /// Also rank the subject crop under every box rule of the study grid (choose on one
    /// seed, report on another).
    #[arg(long)]
    subject_grid: bool,
}

/// The second input size (multi-scale).
const LARGE: usize = 320;
const SMALL: usize = 224;

/// (recall@1, mAP) by edit name.
type PerEdit = BTreeMap<&'static str, (f64, f64)>;

/// Descriptors of one image (database image or query), by name.
type Descs = BTreeMap<&'static str, Vec<f32>>;

struct Item {
    descs: Descs,
    phash: u64,
}

pub fn run(config: &ModelConfig, b: QualityBench) -> anyhow::Result<ExitCode> {
    let files = config.files()?;
    let images = super::list_images(&b.dir)?;
    let n = images.len();
    let q = b.queries.min(n);
    // Queried images: the first q of a seeded Fisher–Yates shuffle, leaving out those the
    // `--disjoint-from` seed queries.
    let draw = |seed: u64| {
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = Rng::new(seed);
        for i in (1..n).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        order
    };
    let excluded: Vec<usize> = b
        .disjoint_from
        .map_or(Vec::new(), |s| draw(s)[..q].to_vec());
    let q = q.min(n - excluded.len());
    let mut queried: Vec<usize> = draw(b.seed)
        .into_iter()
        .filter(|i| !excluded.contains(i))
        .take(q)
        .collect();
    queried.sort_unstable();

    let options = ModelOptions {
        intra_threads: b.threads,
        spinning: false,
    };
    let spec = |input_size| GraphSpec {
        input_size,
        feature_map: true,
    };
    let mut small = EfficientNet::from_onnx_spec(
        &files.onnxruntime,
        &build_graph_with(&files.weights, spec(SMALL))?,
        spec(SMALL),
        options,
    )?;
    let mut large = EfficientNet::from_onnx_spec(
        &files.onnxruntime,
        &build_graph_with(&files.weights, spec(LARGE))?,
        spec(LARGE),
        options,
    )?;
    let subject_model = config
        .load_subject_model()?
        .context("the subject model (u2netp.onnx) is absent: run scripts/setup.sh")?;
    let subjects = SubjectCrops {
        model: &subject_model,
        grid: b.subject_grid,
    };
    let hasher = HasherConfig::new()
        .hash_alg(HashAlg::Mean)
        .preproc_dct()
        .hash_size(8, 8)
        .to_hasher();

    // Producer: decode, fit, edit, make tensors; consumer (this thread): the network.
    struct Work {
        image: usize,
        edit: Option<Edit>,
        t_small: Vec<f32>,
        t_small_flip: Vec<f32>,
        t_large: Vec<f32>,
        t_trimmed: Option<Vec<f32>>,
        /// Queries only: the subject crops' inputs and the subject model's milliseconds.
        subject: Crops,
        subject_ms: Option<f64>,
        phash: u64,
    }
    let (tx, rx) = crossbeam_channel::bounded::<anyhow::Result<Work>>(8);
    let mut db: Vec<Option<Item>> = (0..n).map(|_| None).collect();
    let mut queries: Vec<(usize, Edit, Item)> = Vec::new();
    let mut worst_plain = 1.0f32;
    let mut trimmed_db = 0usize;
    let mut trim_p50 = 0.0f64;
    let mut subject_ms: Vec<f64> = Vec::new();
    // Queries whose subject box (service rule) fell back to the whole image, by edit.
    let mut fallbacks: BTreeMap<&'static str, usize> = BTreeMap::new();
    let started = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        // Owned here so that an early return drops it and unblocks the producer.
        let rx = rx;
        let producer = {
            let (images, queried, hasher, subjects) = (&images, &queried, &hasher, &subjects);
            scope.spawn(move || {
                // Milliseconds per `borders::trim` call, for the cost figures.
                let mut trim_ms: Vec<f64> = Vec::new();
                for (i, path) in images.iter().enumerate() {
                    let base = match load_fitted(path) {
                        Ok(b) => b,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return trim_ms;
                        }
                    };
                    let mut variants: Vec<(Option<Edit>, anyhow::Result<RgbImage>)> =
                        vec![(None, Ok(base.clone()))];
                    if queried.binary_search(&i).is_ok() {
                        for (k, edit) in Edit::ALL.into_iter().chain(Edit::EXTRA).enumerate() {
                            let mut rng = Rng::new(b.seed ^ ((i as u64) << 8) ^ k as u64);
                            let img = apply(edit, &base, &mut rng)
                                .map_err(anyhow::Error::from)
                                .and_then(|img| match edit {
                                    Edit::JpegQ20Small | Edit::Identity => Ok(img),
                                    _ => Ok(jpeg_round_trip(&fit_api(&img)?, 90)?),
                                });
                            variants.push((Some(edit), img));
                        }
                    }
                    for (edit, img) in variants {
                        let work = img.and_then(|img| {
                            let t = Instant::now();
                            let trimmed = borders::trim(&img);
                            trim_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                            let flipped = image::imageops::flip_horizontal(&to_image(&img));
                            let flipped = RgbImage {
                                width: img.width,
                                height: img.height,
                                pixels: flipped.into_raw(),
                            };
                            let (subject, subject_ms) = match edit {
                                Some(_) => {
                                    let (c, ms) = subjects.crops(&img, |c| tensor(c, SMALL))?;
                                    (c, Some(ms))
                                }
                                None => (Crops::new(), None),
                            };
                            Ok(Work {
                                image: i,
                                edit,
                                t_small: tensor(&img, SMALL),
                                t_small_flip: tensor(&flipped, SMALL),
                                t_large: tensor(&img, LARGE),
                                t_trimmed: trimmed.map(|t| tensor(&t, SMALL)),
                                subject,
                                subject_ms,
                                phash: phash(hasher, &img),
                            })
                        });
                        if tx.send(work).is_err() {
                            return trim_ms;
                        }
                    }
                }
                trim_ms
            })
        };
        let mut done = 0usize;
        for work in rx.iter() {
            let work = work?;
            let mut input = work.t_small.clone();
            input.extend_from_slice(&work.t_small_flip);
            if let Some(t) = &work.t_trimmed {
                input.extend_from_slice(t);
            }
            let first_crop = 2 + usize::from(work.t_trimmed.is_some());
            let mut batch = first_crop;
            for t in work.subject.iter().filter_map(|(_, t)| t.as_ref()) {
                input.extend_from_slice(t);
                batch += 1;
            }
            let out_s = small.run(&input, batch)?;
            let out_l = large.run(&work.t_large, 1)?;
            let (map_s, map_f, map_l) = (
                out_s.feature_map_of(0),
                out_s.feature_map_of(1),
                out_l.feature_map_of(0),
            );
            let (ss, sl) = (out_s.map_side, out_l.map_side);
            let mut descs = Descs::new();
            descs.insert("mean224", descriptor::mean_pool(map_s, ss));
            descs.insert("mac224", descriptor::max_pool(map_s, ss));
            descs.insert("gem3_224", descriptor::gem_pool(map_s, ss, 3.0));
            descs.insert("gem4_224", descriptor::gem_pool(map_s, ss, 4.0));
            descs.insert("rmac224", descriptor::rmac(map_s, ss, 3, 3.0));
            descs.insert("gem3_224f", descriptor::gem_pool(map_f, ss, 3.0));
            descs.insert("gem3_320", descriptor::gem_pool(map_l, sl, 3.0));
            descs.insert("rmac320", descriptor::rmac(map_l, sl, 3, 3.0));
            // Border-trimmed: the same image when there was nothing to trim.
            if work.t_trimmed.is_some() {
                let map_t = out_s.feature_map_of(2);
                descs.insert("mean224t", descriptor::mean_pool(map_t, ss));
                descs.insert("gem3_224t", descriptor::gem_pool(map_t, ss, 3.0));
                if work.edit.is_none() {
                    trimmed_db += 1;
                }
            } else {
                descs.insert("mean224t", descs["mean224"].clone());
                descs.insert("gem3_224t", descs["gem3_224"].clone());
            }
            // Subject crops (queries): a fallback searches with the whole image only.
            let mut next = first_crop;
            for (name, t) in &work.subject {
                let d = match t {
                    Some(_) => {
                        next += 1;
                        descriptor::mean_pool(out_s.feature_map_of(next - 1), ss)
                    }
                    None => {
                        if *name == subject::DEFAULT_NAME {
                            if let Some(edit) = work.edit {
                                *fallbacks.entry(edit.name()).or_default() += 1;
                            }
                        }
                        descs["mean224t"].clone()
                    }
                };
                descs.insert(*name, d);
            }
            subject_ms.extend(work.subject_ms);
            // Sanity: pooling the map ourselves gives the network's own `features`.
            let mut plain = out_s.features_of(0).to_vec();
            crate::embedding::l2_normalize(&mut plain);
            worst_plain = worst_plain.min(dot(&plain, &descs["mean224"]));
            let item = Item {
                descs,
                phash: work.phash,
            };
            match work.edit {
                None => db[work.image] = Some(item),
                Some(edit) => queries.push((work.image, edit, item)),
            }
            done += 1;
            if done.is_multiple_of(200) {
                eprintln!(
                    "bench quality: {done} images embedded ({:.0} s)",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        let mut times = producer
            .join()
            .map_err(|_| anyhow::anyhow!("image producer panicked"))?;
        times.sort_by(f64::total_cmp);
        trim_p50 = times.get(times.len() / 2).copied().unwrap_or(0.0);
        Ok(())
    })?;
    let db: Vec<Item> = db
        .into_iter()
        .enumerate()
        .map(|(i, d)| d.with_context(|| format!("{} was not embedded", images[i].display())))
        .collect::<anyhow::Result<_>>()?;
    eprintln!(
        "bench quality: embedded {} database images and {} queries in {:.0} s; \
         mean-pooled map vs `features`: worst cosine {worst_plain:.6}; \
         {trimmed_db} database images had margins trimmed",
        db.len(),
        queries.len(),
        started.elapsed().as_secs_f64()
    );

    // Rankings.
    let mut results: Vec<(String, String, PerEdit)> = Vec::new();
    {
        let mut per_edit = BTreeMap::new();
        for edit in Edit::ALL.into_iter().chain(Edit::EXTRA) {
            let ranks: Vec<usize> = queries
                .iter()
                .filter(|(_, e, _)| *e == edit)
                .map(|(target, _, item)| {
                    rank_of(*target, db.len(), |j| {
                        -((db[j].phash ^ item.phash).count_ones() as f32)
                    })
                })
                .collect();
            per_edit.insert(edit.name(), summarise(&ranks));
        }
        results.push(("pHash 64-bit (DCT, Hamming)".into(), "-".into(), per_edit));
    }
    for m in METHODS {
        let per_edit = rank_method(&db, &queries, m.db, m.query);
        results.push((m.name.to_string(), m.cost.to_string(), per_edit));
    }
    if b.subject_grid {
        for (name, rule) in GRID {
            let query: [&[&str]; 3] = [&["mean224t"], &["mean224"], std::slice::from_ref(name)];
            let per_edit = rank_method(&db, &queries, &["mean224t"], &query);
            let label = format!(
                "grid: subject crop threshold {} margin {} (max of whole and crop)",
                rule.threshold, rule.margin
            );
            results.push((label, "subject + 1–3×224".into(), per_edit));
        }
    }
    subject_ms.sort_by(f64::total_cmp);

    // Costs: the network per query (batch 1) for each input configuration, and the
    // exact index at `index_size` images.
    let costs = json!({
        "network_ms_224": time_ms(&mut small, 1, 30)?,
        "network_ms_2x224": time_ms(&mut small, 2, 30)?,
        "network_ms_320": time_ms(&mut large, 1, 30)?,
        "border_trim_ms_p50": (trim_p50 * 1000.0).round() / 1000.0,
        // In the run (beside the producer's decoding and the consumer's network) and alone.
        "subject_ms_p50_in_run": round3(subject_ms.get(subject_ms.len() / 2).copied().unwrap_or(f64::NAN)),
        "subject_ms_p50_alone": subjects.time_ms(&db_probe(&images)?, 30)?,
        "subject_fallbacks_by_edit": fallbacks,
        "exact_search_ms_p50": search_p50(b.index_size, &db)?,
        "index_size": b.index_size,
    });

    let service = if b.no_service {
        None
    } else {
        Some(service_latency(config, &b, &images, &queried, &db)?)
    };

    // Report.
    let core: Vec<&str> = Edit::ALL.iter().map(|e| e.name()).collect();
    let edit_names: Vec<&str> = Edit::ALL
        .iter()
        .chain(Edit::EXTRA.iter())
        .map(|e| e.name())
        .collect();
    println!(
        "| method | passes/query | overall R@1 | overall mAP | {} | {} |",
        core.join(" | "),
        Edit::EXTRA
            .map(|e| format!("{} (extra)", e.name()))
            .join(" | ")
    );
    println!("|---|---|---|---|{}", "---|".repeat(edit_names.len()));
    let mut rows = Vec::new();
    for (name, cost, per_edit) in &results {
        let total = core
            .iter()
            .map(|e| per_edit[e])
            .fold((0.0, 0.0), |a, v| (a.0 + v.0, a.1 + v.1));
        let k = core.len() as f64;
        let (r1, map) = (total.0 / k, total.1 / k);
        println!(
            "| {name} | {cost} | {r1:.3} | {map:.3} | {} |",
            edit_names
                .iter()
                .map(|e| format!("{:.3}", per_edit[e].0))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        rows.push(json!({
            "method": name,
            "passes": cost,
            "recall_at_1": round3(r1),
            "map": round3(map),
            "per_edit": per_edit.iter().map(|(e, (r, m))| (e.to_string(), json!({"recall_at_1": round3(*r), "map": round3(*m)}))).collect::<serde_json::Map<_, _>>(),
        }));
    }
    println!(
        "{}",
        json!({
            "bench": "quality",
            "database": db.len(),
            "queried_images": q,
            "queries": queries.len(),
            "seed": b.seed,
            "disjoint_from": b.disjoint_from,
            "overall_over": core,
            "database_images_trimmed": trimmed_db,
            "threads": b.threads,
            "costs": costs,
            "search_image_ms": service,
            "methods": rows,
        })
    );
    Ok(ExitCode::SUCCESS)
}

/// (recall@1, mAP) by edit of a method: database vectors composed of `db_parts`, query
/// vectors of each of `query_parts`, similarity the best dot product.
fn rank_method(
    db: &[Item],
    queries: &[(usize, Edit, Item)],
    db_parts: &[&str],
    query_parts: &[&[&str]],
) -> PerEdit {
    let dbv: Vec<Vec<f32>> = db.iter().map(|d| compose(&d.descs, db_parts)).collect();
    let mut per_edit = BTreeMap::new();
    for edit in Edit::ALL.into_iter().chain(Edit::EXTRA) {
        let ranks: Vec<usize> = queries
            .iter()
            .filter(|(_, e, _)| *e == edit)
            .map(|(target, _, item)| {
                let qv: Vec<Vec<f32>> = query_parts
                    .iter()
                    .map(|p| compose(&item.descs, p))
                    .collect();
                rank_of(*target, dbv.len(), |j| {
                    qv.iter()
                        .map(|v| dot(v, &dbv[j]))
                        .fold(f32::NEG_INFINITY, f32::max)
                })
            })
            .collect();
        per_edit.insert(edit.name(), summarise(&ranks));
    }
    per_edit
}

/// A database image for the subject model's stand-alone timing (the first one, fitted).
fn db_probe(images: &[PathBuf]) -> anyhow::Result<RgbImage> {
    let first = images.first().context("no database images")?;
    load_fitted(first)
}

/// (recall@1, mean reciprocal rank) of 1-based ranks.
pub(super) fn summarise(ranks: &[usize]) -> (f64, f64) {
    let n = ranks.len().max(1) as f64;
    let r1 = ranks.iter().filter(|&&r| r == 1).count() as f64 / n;
    let mrr = ranks.iter().map(|&r| 1.0 / r as f64).sum::<f64>() / n;
    (r1, mrr)
}

/// 1-based rank of `target` among `n` items by `score` (higher is better); ties count
/// against the target (pessimistic), so a constant score never looks good.
fn rank_of(target: usize, n: usize, score: impl Fn(usize) -> f32) -> usize {
    let s = score(target);
    1 + (0..n).filter(|&j| j != target && score(j) >= s).count()
}

/// Decodes `path` and brings it inside the API's size rules (see the module comment).
pub(super) fn load_fitted(path: &Path) -> anyhow::Result<RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let img = decode::decode(&bytes, &DecodeLimits::default())
        .with_context(|| format!("decoding {}", path.display()))?;
    let img = fit_api(&img)?;
    Ok(jpeg_round_trip(&img, 90)?)
}

/// Fit within 800×800 (aspect kept) and make the shorter side at least 129 px.
pub(super) fn fit_api(img: &RgbImage) -> anyhow::Result<RgbImage> {
    let (w, h) = crate::vision::preprocess::fit_within(img.width, img.height, 800, 800);
    let short = w.min(h);
    let (w, h) = if short <= 128 {
        let s = 129.0 / f64::from(short);
        (
            (f64::from(w) * s).ceil() as u32,
            (f64::from(h) * s).ceil() as u32,
        )
    } else {
        (w, h)
    };
    if (w, h) == (img.width, img.height) {
        return Ok(img.clone());
    }
    Ok(resize(img, w, h)?)
}

fn tensor(img: &RgbImage, side: usize) -> Vec<f32> {
    let mut t = vec![0f32; 3 * side * side];
    write_input_tensor_sized(img, side, &mut t);
    t
}

fn phash(hasher: &image_hasher::Hasher, img: &RgbImage) -> u64 {
    let hash = hasher.hash_image(&to_image(img));
    hash.as_bytes()
        .iter()
        .take(8)
        .enumerate()
        .fold(0u64, |acc, (i, b)| acc | (u64::from(*b) << (8 * i)))
}
