use super::codes::Code;
use super::*;

/// Deterministic clustered unit vectors (20 per centre), like image embeddings.
fn clustered(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut s = seed;
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    let centres: Vec<Vec<f32>> = (0..n / 20 + 1)
        .map(|_| (0..dim).map(|_| next()).collect())
        .collect();
    (0..n)
        .map(|i| {
            let c = &centres[i % centres.len()];
            let mut v: Vec<f32> = c.iter().map(|x| x + 0.6 * (next() + next())).collect();
            crate::embedding::l2_normalize(&mut v);
            v
        })
        .collect()
}

fn nodes(vs: &[Vec<f32>], first_key: u64) -> Vec<NewNode> {
    vs.iter()
        .enumerate()
        .map(|(i, v)| NewNode {
            key: first_key + i as u64,
            code: Code::of(v),
        })
        .collect()
}

/// The exact top `k` by the codes' own distance (what the graph approximates).
fn exact_top(vs: &[Vec<f32>], q: &[f32], k: usize, first_key: u64) -> Vec<u64> {
    let qc = Code::of(q);
    let mut s: Vec<(f32, u64)> = vs
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let c = Code::of(v);
            let d = codes::distance(&qc.bytes, qc.inv_norm, &c.bytes, c.inv_norm);
            (d, first_key + i as u64)
        })
        .collect();
    s.sort_by(|a, b| a.0.total_cmp(&b.0));
    s.into_iter().take(k).map(|(_, k)| k).collect()
}

fn recall(g: &Hnsw, vs: &[Vec<f32>], queries: &[Vec<f32>], ef: usize) -> f64 {
    let mut found = 0;
    for q in queries {
        let want = exact_top(vs, q, 10, 1);
        let got = g.search(&Code::of(q), 10, ef, &|_| true);
        found += got.iter().filter(|(k, _)| want.contains(k)).count();
    }
    found as f64 / (10 * queries.len()) as f64
}

#[test]
fn finds_the_exact_neighbours_built_serially_or_in_parallel() {
    let (n, dim) = (3000, 64);
    let vs = clustered(n, dim, 1);
    let queries = clustered(60, dim, 2);
    for threads in [1, 2] {
        let mut g = Hnsw::new(
            dim,
            HnswParams {
                m: 12,
                ef_construction: 64,
            },
        );
        g.insert(&nodes(&vs, 1), threads);
        assert_eq!(g.len(), n);
        let r = recall(&g, &vs, &queries, 64);
        eprintln!("recall@10 {r} with {threads} threads");
        assert!(r >= 0.95, "recall@10 {r} with {threads} threads");
        // Each vector finds itself first.
        for i in [0usize, 17, 2999] {
            let got = g.search(&Code::of(&vs[i]), 1, 32, &|_| true);
            assert_eq!(got[0].0, i as u64 + 1);
            assert!(got[0].1 < 1e-3, "distance to itself {}", got[0].1);
        }
    }
}

#[test]
fn removed_nodes_route_but_are_never_returned_and_keys_can_move() {
    let dim = 32;
    let vs = clustered(500, dim, 3);
    let mut g = Hnsw::new(
        dim,
        HnswParams {
            m: 8,
            ef_construction: 40,
        },
    );
    g.insert(&nodes(&vs, 1), 1);
    let q = Code::of(&vs[10]);
    assert_eq!(g.search(&q, 1, 16, &|_| true)[0].0, 11);
    assert!(g.remove(11) && !g.remove(11));
    assert!(g
        .search(&q, 20, 64, &|_| true)
        .iter()
        .all(|(k, _)| *k != 11));
    assert_eq!(g.len(), 499);
    // A filter keeps only even keys.
    let even = g.search(&q, 10, 64, &|k| k % 2 == 0);
    assert_eq!(even.len(), 10);
    assert!(even.iter().all(|(k, _)| k % 2 == 0));
    // Rename: node 13 now answers as key 9000.
    assert!(g.rename(13, 9000));
    assert!(!g.contains(13) && g.contains(9000));
    assert_eq!(g.search(&Code::of(&vs[12]), 1, 16, &|_| true)[0].0, 9000);
    // Re-inserting a removed key gives it a new node.
    g.insert(&nodes(&vs[10..11], 11), 1);
    assert_eq!(g.search(&q, 1, 16, &|_| true)[0].0, 11);
    assert_eq!(g.slots(), 501);
}

#[test]
fn save_and_load_give_the_same_graph_and_damage_is_refused() {
    let dim = 48;
    let vs = clustered(800, dim, 5);
    let mut g = Hnsw::new(
        dim,
        HnswParams {
            m: 10,
            ef_construction: 50,
        },
    );
    g.insert(&nodes(&vs, 100), 2);
    g.remove(105);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.hnsw");
    g.save(&path).unwrap();
    let back = Hnsw::load(&path).unwrap();
    assert_eq!(back.len(), 799);
    assert_eq!(back.params(), g.params());
    for v in vs.iter().step_by(37) {
        let q = Code::of(v);
        assert_eq!(
            back.search(&q, 10, 40, &|_| true),
            g.search(&q, 10, 40, &|_| true)
        );
    }
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    assert!(Hnsw::load(&path).is_err(), "truncated file loaded");
    let mut bad = bytes.clone();
    bad[0] = b'X';
    std::fs::write(&path, &bad).unwrap();
    assert!(Hnsw::load(&path).is_err(), "wrong magic loaded");
    // A link pointing past the last node (level-0 block of the first node).
    let mut bad = bytes.clone();
    let links0_at = 8 + 8 * 4 + 4 + 1 + 800 * (8 + 1 + 1 + 4) + 800 * dim;
    bad[links0_at + 4..links0_at + 8].copy_from_slice(&5000u32.to_le_bytes());
    std::fs::write(&path, &bad).unwrap();
    assert!(Hnsw::load(&path).is_err(), "dangling link loaded");
}

#[test]
fn an_empty_graph_answers_nothing_and_saves() {
    let g = Hnsw::new(
        8,
        HnswParams {
            m: 4,
            ef_construction: 8,
        },
    );
    assert!(g.search(&Code::of(&[1.0; 8]), 5, 10, &|_| true).is_empty());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.hnsw");
    g.save(&path).unwrap();
    assert!(Hnsw::load(&path).unwrap().is_empty());
}
