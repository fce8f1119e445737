//! `imgsearch bench index`: the ANN index (`index::ann`) against exact search on the same
//! vectors — build time, recall@10, QPS with 1 and 2 threads, p50/p99 latency, RAM per
//! vector — printed as one JSON object. Vectors come from fvecs files (ANN-benchmarks
//! format: int32 dim, then dim float32s, per vector) or are synthetic: clustered unit
//! vectors (random centres plus Gaussian-ish noise), because uniform random vectors in
//! high dimension have no neighbours worth finding and say nothing about real embeddings.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use serde_json::json;

use crate::index::ann::{AnnIndex, AnnOptions};
use crate::index::ExactIndex;
use crate::store::DataId;
use crate::vision::model::l2_normalize;

#[derive(Debug, clap::Args)]
pub struct IndexBench {
    /// Base vectors (.fvecs).
    #[arg(long, requires = "queries", conflicts_with = "synthetic")]
    base: Option<PathBuf>,
    /// Query vectors (.fvecs).
    #[arg(long)]
    queries: Option<PathBuf>,
    /// Synthetic base size (clustered unit vectors).
    #[arg(long)]
    synthetic: Option<usize>,
    /// Dimension of synthetic vectors.
    #[arg(long, default_value_t = 1280)]
    dim: usize,
    /// Number of synthetic queries.
    #[arg(long, default_value_t = 200)]
    num_queries: usize,
    /// HNSW search expansion (ef_search).
    #[arg(long, default_value_t = 64)]
    ef_search: usize,
    /// HNSW connectivity (M).
    #[arg(long, default_value_t = 16)]
    connectivity: usize,
}

pub fn run(b: IndexBench) -> anyhow::Result<ExitCode> {
    let (dim, base, queries) = match (&b.base, &b.queries, b.synthetic) {
        (Some(base), Some(queries), None) => {
            let (d1, base) = read_fvecs(base)?;
            let (d2, queries) = read_fvecs(queries)?;
            if d1 != d2 {
                bail!("base vectors have {d1} dimensions, queries {d2}");
            }
            (d1, normalized(base, d1), normalized(queries, d2))
        }
        (None, None, Some(n)) => {
            let all = clustered(n + b.num_queries, b.dim, 7);
            let split = n * b.dim;
            (b.dim, all[..split].to_vec(), all[split..].to_vec())
        }
        _ => bail!("give either --base FILE --queries FILE, or --synthetic N [--dim D]"),
    };
    let n = base.len() / dim;
    let nq = queries.len() / dim;
    if n == 0 || nq == 0 {
        bail!("no vectors to index or to query");
    }
    let options = AnnOptions {
        connectivity: b.connectivity,
        expansion_search: b.ef_search,
        ..AnnOptions::default()
    };
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());

    // Build, adding from every core.
    let ann = AnnIndex::new(dim, options)?;
    ann.reserve(n, threads)?;
    let start = Instant::now();
    std::thread::scope(|s| {
        let chunk = n.div_ceil(threads);
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (ann, base) = (&ann, &base);
                s.spawn(move || -> anyhow::Result<()> {
                    for i in t * chunk..((t + 1) * chunk).min(n) {
                        ann.add(id(i), &base[i * dim..(i + 1) * dim])?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .map_err(|_| anyhow::anyhow!("builder thread panicked"))?
        })
    })?;
    let build_s = start.elapsed().as_secs_f64();

    // Ground truth by exact search.
    let exact = ExactIndex::from_parts(dim, (0..n).map(id).collect(), base)?;
    let truth: Vec<Vec<DataId>> = queries
        .chunks_exact(dim)
        .map(|q| Ok(exact.search(q, 10)?.iter().map(|h| h.id).collect()))
        .collect::<anyhow::Result<_>>()?;
    let exact_start = Instant::now();
    for q in queries.chunks_exact(dim).take(20) {
        exact.search(q, 10)?;
    }
    let exact_ms = exact_start.elapsed().as_secs_f64() * 1000.0 / nq.min(20) as f64;
    drop(exact);

    // Recall and single-thread latency.
    let mut lat = Vec::with_capacity(nq);
    let mut found = 0usize;
    for (q, want) in queries.chunks_exact(dim).zip(&truth) {
        let t = Instant::now();
        let hits = ann.search(q, 10)?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        found += hits.iter().filter(|h| want.contains(&h.id)).count();
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    let recall = found as f64 / (nq * 10) as f64;

    // Throughput with 1 and 2 threads: every thread runs all queries.
    let mut qps = serde_json::Map::new();
    for t in [1usize, 2] {
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..t {
                let (ann, queries) = (&ann, &queries);
                s.spawn(move || {
                    for q in queries.chunks_exact(dim) {
                        let _ = ann.search(q, 10);
                    }
                });
            }
        });
        qps.insert(
            format!("qps_{t}_thread{}", if t == 1 { "" } else { "s" }),
            json!((t * nq) as f64 / start.elapsed().as_secs_f64()),
        );
    }

    let report = json!({
        "bench": "index",
        "vectors": n,
        "queries": nq,
        "dim": dim,
        "source": if b.synthetic.is_some() { "synthetic-clustered" } else { "fvecs" },
        "hnsw": {"connectivity": options.connectivity, "expansion_add": options.expansion_add, "expansion_search": options.expansion_search, "quantization": "i8"},
        "build_s": build_s,
        "recall_at_10": recall,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "throughput": qps,
        "exact_search_ms_per_query": exact_ms,
        "ram_bytes_per_vector": ann.memory_usage() as f64 / n as f64,
    });
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

fn id(i: usize) -> DataId {
    // Keys 1..=n, far below DataId::MAX (a bench tool, not a request path).
    DataId::from_u64(i as u64 + 1).expect("vector index fits a DataId")
}

fn normalized(mut v: Vec<f32>, dim: usize) -> Vec<f32> {
    for row in v.chunks_exact_mut(dim) {
        l2_normalize(row);
    }
    v
}

/// `n` unit vectors around `n / 100 + 1` random centres.
fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    let centres: Vec<f32> = (0..(n / 100 + 1) * dim).map(|_| next()).collect();
    let k = centres.len() / dim;
    let mut out = Vec::with_capacity(n * dim);
    for i in 0..n {
        let c = (i * 7919) % k;
        for d in 0..dim {
            // Sum of three uniforms: roughly Gaussian noise at 60% of the centre's spread.
            let noise = (next() + next() + next()) * 0.6;
            out.push(centres[c * dim + d] + noise);
        }
    }
    normalized(out, dim)
}

fn read_fvecs(path: &Path) -> anyhow::Result<(usize, Vec<f32>)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    let mut dim = 0usize;
    let mut pos = 0usize;
    while pos < bytes.len() {
        let Some(head) = bytes.get(pos..pos + 4) else {
            bail!("{}: truncated at byte {pos}", path.display());
        };
        let d = i32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if d <= 0 || (dim != 0 && d as usize != dim) {
            bail!("{}: bad dimension {d} at byte {pos}", path.display());
        }
        dim = d as usize;
        let Some(body) = bytes.get(pos + 4..pos + 4 + 4 * dim) else {
            bail!("{}: truncated vector at byte {pos}", path.display());
        };
        out.extend(
            body.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
        pos += 4 + 4 * dim;
    }
    if dim == 0 {
        bail!("{}: no vectors", path.display());
    }
    Ok((dim, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fvecs_round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.fvecs");
        let mut bytes = Vec::new();
        for v in [[1.0f32, 2.0], [3.0, 4.0]] {
            bytes.extend(2i32.to_le_bytes());
            v.iter().for_each(|x| bytes.extend(x.to_le_bytes()));
        }
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(read_fvecs(&p).unwrap(), (2, vec![1.0, 2.0, 3.0, 4.0]));
        std::fs::write(&p, &bytes[..bytes.len() - 2]).unwrap();
        assert!(read_fvecs(&p).is_err());
        std::fs::write(&p, b"").unwrap();
        assert!(read_fvecs(&p).is_err());
    }
}
