//! `imgsearch bench filter`: SearchImage's filtered search (`index::filtered`) on an ANN
//! index — recall@10 against the exact top 10 among the images the filter keeps, and
//! single-thread latency — for filters keeping given shares of the images (default 50%,
//! 5%, 0.1%). The server's own code path: the attribute table's plan (scan the kept ids or
//! walk the graph with the filter), its candidates, exact re-ranking of the best 40.
//!
//! Vectors are `bench index`'s synthetic clustered unit vectors (seeded); each image gets
//! `int_attr` = a hash of its number mod 1,000, independent of its cluster, so
//! `int_attr < 500` keeps about half. `--study` also forces each plan on every filter,
//! the figures the scan/graph threshold (`index::filtered::SCAN_COST_RATIO`) comes from:
//! choose it on one `--seed`, report another. Full-precision vectors are in RAM here; the
//! server reads the 40 it re-ranks from the store (about 1 ms more).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::bail;
use serde_json::json;

use super::index::{build, clustered, id};
use crate::attributes::{Attributes, Filter};
use crate::index::ann::AnnOptions;
use crate::index::filtered::{ann_candidates, scan_limit, AttrTable, FilterPlan, SCAN_COST_RATIO};
use crate::index::{rerank, Hit};
use crate::store::DataId;

#[derive(Debug, clap::Args)]
pub struct FilterBench {
    /// Images (synthetic clustered unit vectors).
    #[arg(long, default_value_t = 100_000)]
    synthetic: usize,
    #[arg(long, default_value_t = 1280)]
    dim: usize,
    #[arg(long, default_value_t = 200)]
    num_queries: usize,
    /// Seed of the vectors, the queries and the attributes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Shares of the images the filters keep, in percent.
    #[arg(long, value_delimiter = ',', default_value = "50,5,0.1")]
    keep: Vec<f64>,
    /// The scan/graph cost ratio (`index::filtered::SCAN_COST_RATIO`): scan when the
    /// filter is estimated to keep at most sqrt(ratio × images).
    #[arg(long, default_value_t = SCAN_COST_RATIO)]
    scan_cost_ratio: f64,
    /// Also measure each plan forced, on this many queries.
    #[arg(long, default_value_t = 0)]
    study: usize,
    /// HNSW search expansion (ef).
    #[arg(long, default_value_t = 192)]
    ef_search: usize,
    /// Candidates re-ranked with full-precision vectors, as SearchImage does.
    #[arg(long, default_value_t = 40)]
    rerank: usize,
}

/// A deterministic hash of an image number: its attribute value.
fn attribute_of(i: usize, seed: u64) -> i64 {
    let mut x = (i as u64) ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((x ^ (x >> 31)) % 1000) as i64
}

pub fn run(b: FilterBench) -> anyhow::Result<ExitCode> {
    let (n, dim) = (b.synthetic, b.dim);
    if n == 0 || b.num_queries == 0 {
        bail!("no vectors to index or to query");
    }
    let all = clustered(
        n + b.num_queries,
        dim,
        b.seed.wrapping_mul(7919).wrapping_add(7),
    );
    let (base, queries) = all.split_at(n * dim);
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let options = AnnOptions {
        expansion_search: b.ef_search,
        ..AnnOptions::default()
    };
    let started = Instant::now();
    let ann = build(base, dim, options, threads)?;
    let build_s = started.elapsed().as_secs_f64();
    let mut table = AttrTable::new();
    let values: Vec<i64> = (0..n).map(|i| attribute_of(i, b.seed)).collect();
    for (i, v) in values.iter().enumerate() {
        let mut a = Attributes::NONE;
        a.ints[0] = Some(*v);
        table.set(id(i), a);
    }
    let vector = |d: DataId| {
        let i = d.as_u64() as usize - 1;
        &base[i * dim..(i + 1) * dim]
    };
    let search = |q: &[f32],
                  filter: &Filter,
                  plan: Option<FilterPlan>|
     -> anyhow::Result<(Vec<Hit>, bool)> {
        let plan = plan.unwrap_or_else(|| table.plan(filter, n, b.scan_cost_ratio));
        let scanned = matches!(plan, FilterPlan::Scan(_));
        let cands = ann_candidates(&ann, &table, filter, &plan, &[q], b.rerank.max(10))?;
        let mut ids: Vec<DataId> = cands.iter().map(|h| h.id).collect();
        ids.sort_unstable();
        ids.dedup();
        Ok((
            rerank(&[q], ids.into_iter().map(|d| (d, vector(d))), 10),
            scanned,
        ))
    };

    let mut results = Vec::new();
    for &pct in &b.keep {
        let below = ((pct * 10.0).round() as i64).clamp(1, 1000);
        let filter = Filter::parse(&format!("int_attr < {below}"))?;
        let kept: Vec<usize> = (0..n).filter(|&i| values[i] < below).collect();
        let truth: Vec<Vec<DataId>> = exact_truth(queries, dim, &kept, base, threads);
        let measure =
            |plan: Option<FilterPlan>, count: usize| -> anyhow::Result<serde_json::Value> {
                let mut lat = Vec::with_capacity(count);
                let (mut found, mut scans) = (0usize, 0usize);
                for (q, want) in queries.chunks_exact(dim).zip(&truth).take(count) {
                    let t = Instant::now();
                    let (hits, scanned) = search(q, &filter, plan.clone())?;
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    scans += usize::from(scanned);
                    found += hits.iter().filter(|h| want.contains(&h.id)).count();
                }
                let expected: usize = truth.iter().take(count).map(Vec::len).sum();
                lat.sort_by(|a, b| a.total_cmp(b));
                let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
                Ok(json!({
                    "queries": lat.len(),
                    "recall_at_10": found as f64 / expected.max(1) as f64,
                    "p50_ms": pct(0.5),
                    "p99_ms": pct(0.99),
                    "scanned_queries": scans,
                }))
            };
        let nq = queries.len() / dim;
        let mut entry = json!({
            "filter": format!("int_attr < {below}"),
            "kept": kept.len(),
            "kept_share": kept.len() as f64 / n as f64,
            "estimated": table.estimate(&filter, n),
            "auto": measure(None, nq)?,
        });
        if b.study > 0 {
            let ids: Vec<DataId> = kept.iter().map(|&i| id(i)).collect();
            entry["forced_scan"] = measure(Some(FilterPlan::Scan(ids)), b.study)?;
            entry["forced_graph"] = measure(Some(FilterPlan::Graph), b.study)?;
        }
        eprintln!("{entry}");
        results.push(entry);
    }
    let report = json!({
        "bench": "filter",
        "vectors": n,
        "dim": dim,
        "queries": b.num_queries,
        "seed": b.seed,
        "hnsw": {"connectivity": options.connectivity, "expansion_add": options.expansion_add, "expansion_search": options.expansion_search},
        "scan_cost_ratio": b.scan_cost_ratio,
        "scan_limit": scan_limit(n, b.scan_cost_ratio),
        "rerank_candidates": b.rerank,
        "build_s": build_s,
        "filters": results,
    });
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// The exact top 10 among `kept` for every query, by full-precision cosine, on every core.
fn exact_truth(
    queries: &[f32],
    dim: usize,
    kept: &[usize],
    base: &[f32],
    threads: usize,
) -> Vec<Vec<DataId>> {
    let nq = queries.len() / dim;
    let per = nq.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = queries
            .chunks(per * dim)
            .map(|qs| {
                s.spawn(move || {
                    qs.chunks_exact(dim)
                        .map(|q| {
                            let cands =
                                kept.iter().map(|&i| (id(i), &base[i * dim..(i + 1) * dim]));
                            rerank(&[q], cands, 10)
                                .iter()
                                .map(|h| h.id)
                                .collect::<Vec<_>>()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}
