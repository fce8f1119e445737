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

use super::{resident_bytes, scratch_dir};
use crate::embedding::l2_normalize;
use crate::index::ann::{AnnIndex, AnnOptions};
use crate::index::{rerank, Hit};
use crate::store::DataId;

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
    /// Seed of the synthetic generator: choose settings on one, report another.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Synthetic vectors with no negative component (as image embeddings after ReLU are):
    /// each component's magnitude, then unit length.
    #[arg(long)]
    non_negative: bool,
    /// Write the synthetic base and query vectors to DIR/base.fvecs and DIR/queries.fvecs
    /// and stop (for a peer such as faiss to index the same vectors:
    /// scripts/bench-ann-peer.sh).
    #[arg(long, value_name = "DIR", requires = "synthetic")]
    write_fvecs: Option<PathBuf>,
    /// HNSW search expansion (ef_search); a comma-separated list measures each on the
    /// same graph (the first is the headline figure).
    #[arg(long, value_delimiter = ',', default_value = "128")]
    ef_search: Vec<usize>,
    /// HNSW connectivity (M).
    #[arg(long, default_value_t = AnnOptions::default().connectivity)]
    connectivity: usize,
    /// HNSW build expansion (ef_construction).
    #[arg(long, default_value_t = AnnOptions::default().expansion_add)]
    expansion_add: usize,
    /// Candidates taken from the graph and re-ranked by exact cosine on the full-precision
    /// vectors, as SearchImage does (0: report the graph's own order); a list as for
    /// --ef-search.
    #[arg(long, value_delimiter = ',', default_value = "40")]
    rerank: Vec<usize>,
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
            let mut all = clustered(n + b.num_queries, b.dim, b.seed);
            if b.non_negative {
                all.iter_mut().for_each(|x| *x = x.abs());
                all = normalized(all, b.dim);
            }
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
    if let Some(dir) = &b.write_fvecs {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_fvecs(&dir.join("base.fvecs"), &base, dim)?;
        write_fvecs(&dir.join("queries.fvecs"), &queries, dim)?;
        println!(
            "{}",
            json!({"bench": "index", "wrote": dir.display().to_string(), "vectors": n,
                   "queries": nq, "dim": dim, "seed": b.seed, "non_negative": b.non_negative})
        );
        return Ok(ExitCode::SUCCESS);
    }
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let options = AnnOptions {
        connectivity: b.connectivity,
        expansion_add: b.expansion_add,
        expansion_search: b.ef_search.first().copied().unwrap_or(128),
    };

    // Build, adding from every core.
    let start = Instant::now();
    let ann = build(&base, dim, options, threads)?;
    let build_s = start.elapsed().as_secs_f64();

    // Persist, drop, and load it back the way the server starts: the RAM figure is the
    // resident-memory growth of loading it, the file size is what the disk holds.
    let scratch = scratch_dir("index", None)?;
    let path = scratch.path().join("graph.hnsw");
    ann.save(&path)?;
    let file_bytes = std::fs::metadata(&path)?.len();
    drop(ann);
    let rss_before = resident_bytes();
    let load_start = Instant::now();
    let ann = AnnIndex::load(&path, dim, options)?;
    let load_s = load_start.elapsed().as_secs_f64();
    let rss_growth = resident_bytes()
        .zip(rss_before)
        .map(|(a, b)| a.saturating_sub(b));

    // Ground truth by exact search, queries spread over every core.
    let exact_start = Instant::now();
    let truth: Vec<Vec<DataId>> = std::thread::scope(|s| {
        let per = nq.div_ceil(threads);
        let handles: Vec<_> = queries
            .chunks(per * dim)
            .map(|qs| {
                let base = &base;
                s.spawn(move || {
                    qs.chunks_exact(dim)
                        .map(|q| {
                            let all = base.chunks_exact(dim).enumerate().map(|(i, v)| (id(i), v));
                            rerank_top(q, all, 10).iter().map(|h| h.id).collect()
                        })
                        .collect::<Vec<Vec<DataId>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("ground-truth thread panicked"))
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .map(|v| v.concat())
    })?;
    let exact_ms = exact_start.elapsed().as_secs_f64() * 1000.0 * threads as f64 / nq as f64;

    // The searched path: graph candidates, then exact re-ranking of them.
    let search = |q: &[f32], rr: usize| -> anyhow::Result<Vec<Hit>> {
        let hits = ann.search(q, rr.max(10))?;
        if rr == 0 {
            return Ok(hits);
        }
        let cands = hits.iter().map(|h| {
            let i = h.id.as_u64() as usize - 1;
            (h.id, &base[i * dim..(i + 1) * dim])
        });
        Ok(rerank(&[q], cands, 10))
    };
    let measure = |ef: usize, rr: usize| -> anyhow::Result<serde_json::Value> {
        ann.set_expansion_search(ef);
        // Recall and single-thread latency.
        let mut lat = Vec::with_capacity(nq);
        let mut found = 0usize;
        for (q, want) in queries.chunks_exact(dim).zip(&truth) {
            let t = Instant::now();
            let hits = search(q, rr)?;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            found += hits
                .iter()
                .take(10)
                .filter(|h| want.contains(&h.id))
                .count();
        }
        lat.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
        // Throughput with 1 and 2 threads: every thread runs all queries.
        let mut qps = serde_json::Map::new();
        for t in [1usize, 2] {
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..t {
                    let (search, queries) = (&search, &queries);
                    s.spawn(move || {
                        for q in queries.chunks_exact(dim) {
                            let _ = search(q, rr);
                        }
                    });
                }
            });
            qps.insert(
                format!("qps_{t}_thread{}", if t == 1 { "" } else { "s" }),
                json!((t * nq) as f64 / start.elapsed().as_secs_f64()),
            );
        }
        Ok(json!({
            "ef_search": ef,
            "rerank_candidates": rr,
            "recall_at_10": found as f64 / (nq * 10) as f64,
            "p50_ms": pct(0.5),
            "p99_ms": pct(0.99),
            "throughput": qps,
        }))
    };
    let mut sweep = Vec::new();
    for &ef in &b.ef_search {
        for &rr in &b.rerank {
            sweep.push(measure(ef, rr)?);
        }
    }
    let head = sweep.first().cloned().unwrap_or_default();
    let (graph_bytes, vector_bytes) = ann.memory_breakdown();

    let report = json!({
        "bench": "index",
        "vectors": n,
        "queries": nq,
        "dim": dim,
        "source": if b.synthetic.is_some() { "synthetic-clustered" } else { "fvecs" },
        "seed": b.synthetic.map(|_| b.seed),
        "hnsw": {"connectivity": options.connectivity, "expansion_add": options.expansion_add, "expansion_search": options.expansion_search, "quantization": "i8 (per-vector scale)"},
        "rerank_candidates": head["rerank_candidates"],
        "threads": threads,
        "build_s": build_s,
        "recall_at_10": head["recall_at_10"],
        "p50_ms": head["p50_ms"],
        "p99_ms": head["p99_ms"],
        "throughput": head["throughput"],
        "sweep": sweep,
        "exact_search_ms_per_query": exact_ms,
        "load_s": load_s,
        "file_bytes_per_vector": file_bytes as f64 / n as f64,
        "ram_bytes_per_vector": rss_growth.map(|b| b as f64 / n as f64),
        "allocator_bytes_per_vector": ann.memory_usage() as f64 / n as f64,
        "graph_bytes_per_vector": graph_bytes as f64 / n as f64,
        "quantized_vector_bytes_per_vector": vector_bytes as f64 / n as f64,
    });
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// An index of `base` (vector `i` under [`id`]`(i)`), added from `threads` threads the way
/// the server bulk-loads (no graph search races the adds), in batches as it streams them.
pub(super) fn build(
    base: &[f32],
    dim: usize,
    options: AnnOptions,
    threads: usize,
) -> anyhow::Result<AnnIndex> {
    let n = base.len() / dim.max(1);
    let ann = AnnIndex::new(dim, options)?;
    ann.reserve(n)?;
    let mut seen = std::collections::HashMap::new();
    for start in (0..n).step_by(4096) {
        let items: Vec<(DataId, &[f32])> = (start..(start + 4096).min(n))
            .map(|i| (id(i), &base[i * dim..(i + 1) * dim]))
            .collect();
        ann.add_fresh_parallel(&items, threads, &mut seen)?;
    }
    Ok(ann)
}

/// Exact top-k of `all` by cosine (the ground truth scan).
fn rerank_top<'a>(q: &[f32], all: impl Iterator<Item = (DataId, &'a [f32])>, k: usize) -> Vec<Hit> {
    // Keep a bounded candidate list instead of sorting millions of hits.
    let mut best: Vec<Hit> = Vec::with_capacity(4 * k);
    let mut floor = f32::NEG_INFINITY;
    for (i, v) in all {
        let c = crate::embedding::dot(q, v);
        if c > floor || best.len() < k {
            best.push(Hit { id: i, cosine: c });
            if best.len() >= 4 * k {
                best = rerank_keep(best, k);
                floor = best.last().map_or(f32::NEG_INFINITY, |h| h.cosine);
            }
        }
    }
    rerank_keep(best, k)
}

fn rerank_keep(mut hits: Vec<Hit>, k: usize) -> Vec<Hit> {
    hits.sort_by(|a, b| b.cosine.total_cmp(&a.cosine).then(a.id.cmp(&b.id)));
    hits.truncate(k);
    hits
}

pub(super) fn id(i: usize) -> DataId {
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
pub(super) fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
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

fn write_fvecs(path: &Path, vectors: &[f32], dim: usize) -> anyhow::Result<()> {
    let mut out = Vec::with_capacity(vectors.len() / dim * (4 + 4 * dim));
    for v in vectors.chunks_exact(dim) {
        out.extend_from_slice(&(dim as i32).to_le_bytes());
        v.iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
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
        write_fvecs(&p, &[5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 3).unwrap();
        assert_eq!(
            read_fvecs(&p).unwrap(),
            (3, vec![5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
        );
        std::fs::write(&p, &bytes[..bytes.len() - 2]).unwrap();
        assert!(read_fvecs(&p).is_err());
        std::fs::write(&p, b"").unwrap();
        assert!(read_fvecs(&p).is_err());
    }
}
