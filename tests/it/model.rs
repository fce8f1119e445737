//! Acceptance for the embedding model, end to end through our decoder and preprocessing:
//! - every reference input: same top-1 as the reference and embedding cosine ≥ 0.9999;
//! - all 1,000 ImageNet samples: top-1 accuracy within 1.5 points of the reference 0.820.
//!
//! Data comes from ../shared; a missing data set fails the test.

use std::path::PathBuf;

use imgsearch::vision::decode::DecodeLimits;
use imgsearch::vision::embedder::EmbeddingBatcher;
use imgsearch::vision::model::{top_k, EfficientNet, ModelFiles, ModelOptions};
use imgsearch::vision::pipeline::run_files;

use crate::common::shared;

fn batcher() -> EmbeddingBatcher {
    let files = ModelFiles::locate(None, None).expect("model files (run scripts/setup.sh)");
    let model = EfficientNet::load(&files, ModelOptions::default()).expect("model loads");
    EmbeddingBatcher::start(model, Default::default())
}

#[test]
fn reference_inputs_match_embeddings_and_top1() {
    let dir = shared().join("reference/efficientnet-lite0");
    let refs = std::fs::read_to_string(dir.join("embeddings-224.jsonl"))
        .expect("reference embeddings in ../shared");
    let rows: Vec<serde_json::Value> = refs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 12);
    let files: Vec<PathBuf> = rows
        .iter()
        .map(|r| dir.join(r["input"].as_str().unwrap()))
        .collect();
    let batcher = batcher();
    let mut worst = 1.0f32;
    let mut checked = 0;
    run_files(
        &files,
        &batcher,
        2,
        &DecodeLimits::default(),
        |i, path, result| {
            let inf = result.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let want: Vec<f32> = rows[i]["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let norm = want.iter().map(|x| x * x).sum::<f32>().sqrt();
            let cos = inf
                .embedding
                .iter()
                .zip(&want)
                .map(|(a, b)| a * b)
                .sum::<f32>()
                / norm;
            let top1 = top_k(&inf.logits, 1)[0].0;
            assert_eq!(
                top1 as u64,
                rows[i]["top5"][0].as_u64().unwrap(),
                "{}",
                path.display()
            );
            assert!(cos >= 0.9999, "{}: cosine {cos}", path.display());
            worst = worst.min(cos);
            checked += 1;
        },
    );
    assert_eq!(checked, 12);
    println!("worst cosine to reference: {worst:.6}");
}

#[test]
fn imagenet_samples_top1_accuracy_near_reference() {
    let dir = shared().join("datasets/imagenet-samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("imagenet samples in ../shared")
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 1000);
    // Class index = rank of the file's wnid among all wnids; sorted names give it directly.
    let batcher = batcher();
    let (mut correct, mut done) = (0, 0);
    run_files(
        &files,
        &batcher,
        2,
        &DecodeLimits::default(),
        |i, path, result| {
            let inf = result.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if top_k(&inf.logits, 1)[0].0 == i {
                correct += 1;
            }
            done += 1;
        },
    );
    assert_eq!(done, 1000);
    let acc = correct as f64 / 1000.0;
    println!("top-1 accuracy on 1,000 samples: {acc:.3} (reference 0.820)");
    assert!(
        (acc - 0.820).abs() <= 0.015,
        "top-1 {acc} is more than 1.5 points from 0.820"
    );
}

#[test]
fn concurrent_callers_share_batches_and_a_full_queue_refuses_at_once() {
    use imgsearch::vision::embedder::{BatcherConfig, EmbedError};
    use imgsearch::vision::preprocess::{image_to_tensor, INPUT_LEN};
    use std::time::Duration;

    let files = ModelFiles::locate(None, None).expect("model files (run scripts/setup.sh)");
    let model = EfficientNet::load(&files, ModelOptions::default()).expect("model loads");
    let batcher = EmbeddingBatcher::start(
        model,
        BatcherConfig {
            max_batch: 8,
            batch_window: Duration::from_millis(20),
            queue_capacity: 16,
        },
    );
    let bytes =
        std::fs::read(shared().join("datasets/imagenet-samples/n01440764_tench.JPEG")).unwrap();
    let mut tensor = vec![0f32; INPUT_LEN];
    image_to_tensor(&bytes, &DecodeLimits::default(), &mut tensor).unwrap();

    // 16 submissions at once fill the queue; the 17th+ must fail immediately, not block.
    let mut tickets = Vec::new();
    let mut refused = 0;
    for _ in 0..40 {
        match batcher.submit(tensor.clone()) {
            Ok(t) => tickets.push(t),
            Err(EmbedError::QueueFull { capacity }) => {
                assert_eq!(capacity, 16);
                refused += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(refused > 0, "a bounded queue must refuse when full");
    let first = tickets.remove(0).wait().unwrap().embedding;
    for t in tickets {
        let e = t.wait().unwrap().embedding;
        // Same input, same answer, whatever batch it ran in.
        let cos: f32 = e.iter().zip(&first).map(|(a, b)| a * b).sum();
        assert!(cos > 0.99999, "cos {cos}");
    }
    let stats = batcher.stats();
    let images = stats.images.load(std::sync::atomic::Ordering::Relaxed);
    let batches = stats.batches.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(images, 40 - refused);
    assert!(
        batches < images,
        "{images} images in {batches} batches: callers should share batches"
    );
}
