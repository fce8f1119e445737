//! `imgsearch bench preprocess`: single-thread speed of bytes → network input (decode,
//! resize, normalise; EXIF orientation included) over a directory of images preloaded in
//! memory, wall and CPU time per image, split into decode and the rest. No network: that is
//! `bench embed`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;

use super::{cpu_seconds, list_images, round3};
use crate::vision::decode::{decode_unoriented, DecodeLimits};
use crate::vision::preprocess::{image_to_tensor, write_input_tensor, INPUT_LEN};

#[derive(Debug, clap::Args)]
pub struct PreprocessBench {
    /// Images (JPEG/PNG).
    #[arg(long, default_value = "../shared/datasets/imagenet-samples")]
    dir: PathBuf,
    /// Passes over the directory, each reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

pub fn run(b: PreprocessBench) -> anyhow::Result<ExitCode> {
    let mut samples = Vec::new();
    for path in list_images(&b.dir)? {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        samples.push((path.display().to_string(), bytes));
    }
    let limits = DecodeLimits::default();
    let mut out = vec![0f32; INPUT_LEN];
    // Warm-up (page cache, allocator, resizer buffers, CPU feature detection).
    for (name, bytes) in samples.iter().take(50) {
        image_to_tensor(bytes, &limits, &mut out).with_context(|| name.clone())?;
    }
    let n = samples.len() as f64;
    let mut rounds = Vec::new();
    for round in 0..b.rounds {
        let (t0, c0) = (Instant::now(), cpu_seconds());
        let mut per: Vec<(f64, &str)> = Vec::with_capacity(samples.len());
        let (mut t_decode, mut t_rest) = (0f64, 0f64);
        for (name, bytes) in &samples {
            let t = Instant::now();
            let (img, _) = decode_unoriented(bytes, &limits).with_context(|| name.clone())?;
            let t1 = Instant::now();
            write_input_tensor(&img, &mut out);
            let t2 = Instant::now();
            t_decode += (t1 - t).as_secs_f64();
            t_rest += (t2 - t1).as_secs_f64();
            per.push(((t2 - t).as_secs_f64() * 1e3, name));
        }
        let wall_ms = t0.elapsed().as_secs_f64() * 1e3 / n;
        let cpu_ms = match (c0, cpu_seconds()) {
            (Some(a), Some(b)) => Some((b - a) * 1e3 / n),
            _ => None,
        };
        per.sort_by(|a, b| a.0.total_cmp(&b.0));
        let at = |q: f64| per[((per.len() - 1) as f64 * q) as usize];
        let row = json!({
            "round": round,
            "wall_ms_per_image": round3(wall_ms),
            "cpu_ms_per_image": cpu_ms.map(round3),
            "decode_ms": round3(t_decode * 1e3 / n),
            "resize_normalise_ms": round3(t_rest * 1e3 / n),
            "median_ms": round3(at(0.5).0),
            "p90_ms": round3(at(0.9).0),
            "max_ms": round3(at(1.0).0),
            "slowest": at(1.0).1,
        });
        eprintln!("{row}");
        rounds.push(row);
    }
    println!(
        "{}",
        json!({"bench": "preprocess", "images": samples.len(), "rounds": rounds})
    );
    Ok(ExitCode::SUCCESS)
}
