//! What a method costs at search time, measured by `bench quality`: the network per batch,
//! an exact search at the database size, and SearchImage end to end through the service.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;

use super::descriptor::CHANNELS;
use super::edits::{self, apply, Edit, Rng};
use super::{load_fitted, Item, QualityBench};
use crate::bench::vector_only;
use crate::config::ModelConfig;
use crate::index::ExactIndex;
use crate::store::DataId;
use crate::vision::model::EfficientNet;

/// Median milliseconds of one network run on a `batch` of images, after a warm-up.
pub(super) fn time_ms(model: &mut EfficientNet, batch: usize, runs: usize) -> anyhow::Result<f64> {
    let input: Vec<f32> = (0..batch * model.input_len())
        .map(|i| ((i * 7919) % 255) as f32 / 128.0 - 1.0)
        .collect();
    for _ in 0..3 {
        model.run(&input, batch)?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        model.run(&input, batch)?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2] * 100.0).round() / 100.0)
}

/// Median milliseconds of an exact top-10 search over `size` vectors (the database's
/// trimmed plain vectors, repeated with small perturbations) for queries from the
/// database.
pub(super) fn search_p50(size: usize, db: &[Item]) -> anyhow::Result<f64> {
    let mut index = ExactIndex::new(CHANNELS);
    let mut rng = Rng::new(7);
    for k in 0..size {
        let base = &db[k % db.len()].descs["mean224t"];
        let mut v: Vec<f32> = base
            .iter()
            .map(|x| x + (rng.below(1000) as f32 / 1000.0 - 0.5) * 0.01)
            .collect();
        crate::embedding::l2_normalize(&mut v);
        let id = DataId::from_u64(k as u64 + 1).context("data id")?;
        index.add(id, &v)?;
    }
    let mut times = Vec::new();
    for item in db.iter().take(50) {
        let t = Instant::now();
        let hits = index.search(&item.descs["mean224t"], 10)?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(hits);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2] * 100.0).round() / 100.0)
}

/// SearchImage end to end through `ImageService` (decode, trim, embed with the `serve`
/// defaults, exact search, record lookup), sequentially, over a temporary SQLite store of
/// `index_size` images whose vectors are the database's, repeated with small perturbations.
/// Queries: up to 50 of the queried images as uploaded JPEGs, and the same pasted at 40% on
/// a plain canvas (margins trimmed, so searched twice).
pub(super) fn service_latency(
    config: &ModelConfig,
    b: &QualityBench,
    images: &[PathBuf],
    queried: &[usize],
    db: &[Item],
) -> anyhow::Result<serde_json::Value> {
    use crate::fetch::{FetchConfig, ImageFetcher};
    use crate::service::images::{ImageService, ImageSource, Part, SearchImage, SearchQuery};
    use crate::service::list_token::ListTokenKey;
    use crate::service::IndexSettings;
    use crate::store::{DbRef, ImageStore, NewImage, SqliteStore};
    use crate::vision::embedder::EmbeddingBatcher;
    use std::sync::Arc;

    let scratch = crate::bench::scratch_dir("quality", None)?;
    let dir = scratch.path();
    let result = (|| -> anyhow::Result<serde_json::Value> {
        let store = SqliteStore::open(dir)?;
        let dbref = DbRef::new("bench", "quality");
        store.create_db(dbref)?;
        let mut rng = Rng::new(11);
        let started = Instant::now();
        let mut k = 0usize;
        while k < b.index_size {
            let n = (b.index_size - k).min(1000);
            let vectors: Vec<Vec<f32>> = (k..k + n)
                .map(|i| {
                    let base = &db[i % db.len()].descs["mean224t"];
                    let mut v: Vec<f32> = base
                        .iter()
                        .map(|x| {
                            if i < db.len() {
                                *x
                            } else {
                                x + (rng.below(1000) as f32 / 1000.0 - 0.5) * 0.01
                            }
                        })
                        .collect();
                    crate::embedding::l2_normalize(&mut v);
                    v
                })
                .collect();
            let entities: Vec<String> = (k..k + n).map(|i| format!("e{i}")).collect();
            let batch: Vec<NewImage<'_>> = vectors
                .iter()
                .zip(&entities)
                .map(|(v, e)| vector_only(e, v))
                .collect();
            store.add_images(dbref, &batch)?;
            k += n;
        }
        eprintln!(
            "bench quality: stored {} vectors in {:.0} s",
            b.index_size,
            started.elapsed().as_secs_f64()
        );
        let models = config.load_models()?;
        let sessions = models.len();
        let embedder = Arc::new(EmbeddingBatcher::start_many(models, config.batcher(256)));
        let service = ImageService::start(
            Arc::new(store),
            ImageFetcher::new(FetchConfig::default())?,
            embedder,
            ListTokenKey::generate()?,
            IndexSettings::in_data_dir(dir),
        )?;
        // Query files.
        let mut plain = Vec::new();
        let mut pasted = Vec::new();
        for &i in queried.iter().take(50) {
            let base = load_fitted(&images[i])?;
            plain.push(edits::encode_jpeg(&base, 90)?);
            let p = apply(Edit::Paste40, &base, &mut Rng::new(b.seed ^ i as u64))?;
            pasted.push(edits::encode_jpeg(&p, 90)?);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let measure = |files: &[Vec<u8>]| -> anyhow::Result<(f64, f64)> {
            let mut times = Vec::new();
            for (round, bytes) in files.iter().chain(files.iter().take(5)).enumerate() {
                let t = Instant::now();
                let matches = rt.block_on(service.search_image(
                    "bench",
                    SearchImage {
                        db: "quality".into(),
                        query: SearchQuery::Image(ImageSource::Bytes(bytes.clone())),
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
                (times[i] * 10.0).round() / 10.0
            };
            Ok((at(0.5), at(0.9)))
        };
        let (p50, p90) = measure(&plain)?;
        let (t50, t90) = measure(&pasted)?;
        Ok(json!({
            "images": b.index_size,
            "inference_sessions": sessions,
            "plain_p50": p50,
            "plain_p90": p90,
            "with_margins_p50": t50,
            "with_margins_p90": t90,
        }))
    })();
    result
}
