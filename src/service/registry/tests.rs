//! Tests of the index registry: promotion, snapshots reloaded in step with the store,
//! rebuilds of unusable or foreign snapshots.

use std::path::Path;

use super::*;
use crate::embedding::{COPY_DIM, EMBEDDING_DIM};
use crate::service::db_index::{ImageVectors, QueryVectors, ScoredHit};
use crate::store::{DataId, DbRef, Descriptor, NewImage, SqliteStore};

fn unit(seed: u64) -> Vec<f32> {
    unit_of(seed, EMBEDDING_DIM)
}

/// The copy descriptor of image `seed` (another random unit vector).
fn copy_of(seed: u64) -> Vec<f32> {
    unit_of(seed ^ 0xC0FF_EE00, COPY_DIM)
}

fn unit_of(seed: u64, dim: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<f32> = (0..dim)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    crate::embedding::l2_normalize(&mut v);
    v
}

fn settings(dir: &Path, threshold: usize) -> IndexSettings {
    IndexSettings {
        ann_threshold: threshold,
        ..IndexSettings::in_data_dir(dir)
    }
}

/// Adds images `seeds` to the store only (as if the process died before the index), with
/// both descriptors.
fn store_add(store: &SqliteStore, db: DbRef<'_>, seeds: std::ops::Range<u64>) -> Vec<DataId> {
    store_add_with(store, db, seeds, true)
}

/// [`store_add`], with or without copy descriptors (images stored before they existed).
fn store_add_with(
    store: &SqliteStore,
    db: DbRef<'_>,
    seeds: std::ops::Range<u64>,
    with_copy: bool,
) -> Vec<DataId> {
    seeds
        .map(|i| {
            let (v, c) = (unit(i), copy_of(i));
            let e = format!("e{i}");
            store
                .add_image(
                    db,
                    &NewImage {
                        entity_id: &e,
                        extra_data: "",
                        image_url: "",
                        embedding: &v,
                        copy_embedding: with_copy.then_some(c.as_slice()),
                        thumbnail: None,
                        attributes: &crate::store::Attributes::NONE,
                    },
                )
                .unwrap()
                .data_id
        })
        .collect()
}

fn top(ix: &DbIndex, store: &dyn ImageStore, seed: u64) -> ScoredHit {
    let q = QueryVectors {
        semantic: vec![unit(seed)],
        copy: Some(copy_of(seed)),
    };
    ix.search(store, &q, 3, 40, None).unwrap().0[0]
}

#[test]
fn promotes_at_the_threshold_and_reloads_the_snapshot_in_step_with_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let db = DbRef::new("tenant/x", "big");
    store.create_db(db).unwrap();
    let ids = store_add(&store, db, 0..120);

    // Below the threshold: exact. Add through the index as the service does.
    let indexes = Arc::new(DbIndexes::open(store.clone(), settings(dir.path(), 150)).unwrap());
    let ix = indexes.get("tenant/x", "big").unwrap();
    assert!(!ix.is_ann());
    for (i, id) in (120..160).zip(store_add(&store, db, 120..160)) {
        let (v, c) = (unit(i), copy_of(i));
        let vectors = ImageVectors {
            semantic: &v,
            copy: Some(&c),
        };
        ix.add(id, vectors, &crate::store::Attributes::NONE)
            .unwrap();
    }
    ix.promote(store.as_ref(), indexes.settings()).unwrap();
    assert!(ix.is_ann());
    assert_eq!(ix.len(), 160);
    let meta = snapshot::read_meta(&ix.dir).unwrap();
    assert_eq!(meta.count, 160);
    let copy_meta = snapshot::read_meta(&ix.dir.join("copy")).unwrap();
    assert_eq!((copy_meta.count, copy_meta.dim), (160, COPY_DIM));
    // Re-ranked: the exact copy first, with the exact cosines (score 10).
    let hit = top(&ix, store.as_ref(), 7);
    assert_eq!(hit.id, ids[7]);
    assert_eq!(hit.score, 10.0);
    assert!(hit.copy.is_some_and(|c| c > 0.999) && hit.semantic.is_some_and(|s| s > 0.999));

    // After the snapshot, the store moves on without the index (a crash): 10 adds,
    // one entity deleted.
    let later = store_add(&store, db, 160..170);
    let gone = store.delete_entity(db, "e3").unwrap();
    assert_eq!(gone, vec![ids[3]]);
    drop((ix, indexes));

    let indexes = DbIndexes::open(store.clone(), settings(dir.path(), 150)).unwrap();
    let ix = indexes.get("tenant/x", "big").unwrap();
    assert!(ix.is_ann());
    assert_eq!(ix.len(), 169);
    assert_eq!(top(&ix, store.as_ref(), 165).id, later[5]);
    assert_ne!(top(&ix, store.as_ref(), 3).id, ids[3]);
    // The next snapshot records the repaired state; a clean restart changes nothing.
    indexes.snapshot_all();
    assert_eq!(snapshot::read_meta(&ix.dir).unwrap().count, 169);
    assert_eq!(snapshot::read_meta(&ix.dir).unwrap().generation, 2);
    assert_eq!(
        snapshot::read_meta(&ix.dir.join("copy")).unwrap().count,
        169
    );
    drop((ix, indexes));
    let indexes = DbIndexes::open(store.clone(), settings(dir.path(), 150)).unwrap();
    assert_eq!(indexes.get("tenant/x", "big").unwrap().len(), 169);
}

#[test]
fn an_unusable_snapshot_is_rebuilt_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let db = DbRef::new("t", "big");
    store.create_db(db).unwrap();
    let ids = store_add(&store, db, 0..80);
    let open = || DbIndexes::open(store.clone(), settings(dir.path(), 50)).unwrap();
    let snap = {
        // No snapshot yet: built from the store and saved.
        let indexes = open();
        let ix = indexes.get("t", "big").unwrap();
        assert!(ix.is_ann());
        assert_eq!(ix.len(), 80);
        ix.dir.clone()
    };
    // A truncated graph file.
    let graph = snap.join("graph-1.hnsw");
    let len = std::fs::metadata(&graph).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&graph)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let indexes = open();
    let ix = indexes.get("t", "big").unwrap();
    assert_eq!(ix.len(), 80);
    assert_eq!(top(&ix, store.as_ref(), 11).id, ids[11]);
    assert_eq!(snapshot::read_meta(&snap).unwrap().generation, 2);
    drop((ix, indexes));
    // Garbage in the meta file.
    std::fs::write(snap.join(snapshot::META_FILE), b"{not json").unwrap();
    assert_eq!(open().get("t", "big").unwrap().len(), 80);
}

#[test]
fn a_recreated_database_does_not_inherit_the_old_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let db = DbRef::new("t", "big");
    store.create_db(db).unwrap();
    store_add(&store, db, 0..60);
    let stale = {
        let indexes = DbIndexes::open(store.clone(), settings(dir.path(), 50)).unwrap();
        let ix = indexes.get("t", "big").unwrap();
        assert!(ix.is_ann());
        ix.dir.clone()
    };
    let meta = std::fs::read(stale.join(snapshot::META_FILE)).unwrap();
    store.delete_db(db).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    store.create_db(db).unwrap();
    let ids = store_add(&store, db, 100..160);
    // The old snapshot put back, as a crash between the two could leave it.
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join(snapshot::META_FILE), meta).unwrap();
    let indexes = DbIndexes::open(store.clone(), settings(dir.path(), 50)).unwrap();
    let ix = indexes.get("t", "big").unwrap();
    assert_eq!(ix.len(), 60);
    assert_eq!(top(&ix, store.as_ref(), 100).id, ids[0]);
    // Deleting the database removes its snapshot; orphans are swept at open.
    indexes.deleted(&ix);
    assert!(!stale.exists());
}

#[test]
fn images_stored_before_copy_descriptors_are_found_by_their_semantic_vector() {
    for threshold in [1000, 50] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let db = DbRef::new("t", "mixed");
        store.create_db(db).unwrap();
        // 40 old images (semantic only), then 40 with both descriptors.
        let old = store_add_with(&store, db, 0..40, false);
        let new = store_add(&store, db, 40..80);
        assert_eq!(store.list_ids(db, Descriptor::Copy).unwrap(), new);
        let indexes = DbIndexes::open(store.clone(), settings(dir.path(), threshold)).unwrap();
        let ix = indexes.get("t", "mixed").unwrap();
        assert_eq!(ix.is_ann(), threshold == 50);
        assert_eq!(ix.len(), 80);
        // An old image: its semantic twin scores 10 without a copy cosine.
        let hit = top(&ix, store.as_ref(), 5);
        assert_eq!((hit.id, hit.score, hit.copy), (old[5], 10.0, None));
        // A new one, by its copy descriptor alone.
        let q = QueryVectors {
            semantic: vec![unit(10_000)],
            copy: Some(copy_of(45)),
        };
        let hit = ix.search(store.as_ref(), &q, 3, 40, None).unwrap().0[0];
        assert_eq!((hit.id, hit.score), (new[5], 10.0));
        // Backfilled descriptors reach the index after a restart.
        let backfill: Vec<(DataId, Vec<f32>)> = old
            .iter()
            .zip(0..)
            .map(|(&id, i)| (id, copy_of(i)))
            .collect();
        assert_eq!(store.set_copy_embeddings(db, &backfill).unwrap(), old);
        assert_eq!(
            store.set_copy_embeddings(db, &backfill).unwrap(),
            Vec::<DataId>::new(),
            "never over one stored"
        );
        assert!(store.ids_without_copy(db, None, 10).unwrap().is_empty());
        drop((ix, indexes));
        let indexes = DbIndexes::open(store.clone(), settings(dir.path(), threshold)).unwrap();
        let ix = indexes.get("t", "mixed").unwrap();
        let q = QueryVectors {
            semantic: vec![unit(10_000)],
            copy: Some(copy_of(5)),
        };
        assert_eq!(
            ix.search(store.as_ref(), &q, 3, 40, None).unwrap().0[0].id,
            old[5]
        );
    }
}

/// Adds images `seeds` to the store with `int_attr = seed % 10` (none for seeds ≥ 1000).
fn store_add_attributed(store: &SqliteStore, db: DbRef<'_>, seeds: std::ops::Range<u64>) {
    for i in seeds {
        let (v, c) = (unit(i), copy_of(i));
        let mut a = crate::store::Attributes::NONE;
        a.ints[0] = (i < 1000).then_some((i % 10) as i64);
        store
            .add_image(
                db,
                &NewImage {
                    entity_id: &format!("e{i}"),
                    extra_data: "",
                    image_url: "",
                    embedding: &v,
                    copy_embedding: Some(&c),
                    thumbnail: None,
                    attributes: &a,
                },
            )
            .unwrap();
    }
}

#[test]
fn filtered_search_returns_the_best_passing_images_exact_and_ann() {
    use crate::attributes::Filter;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let db = DbRef::new("t", "shop");
    store.create_db(db).unwrap();
    store_add_attributed(&store, db, 0..300);
    store_add_attributed(&store, db, 1000..1020);
    let records = store
        .get_images(db, &store.list_ids(db, Descriptor::Semantic).unwrap())
        .unwrap();
    // Exact truth: rank every passing image by the fused score of its two cosines.
    let truth = |seed: u64, f: &Filter| -> Vec<DataId> {
        let (q, qc) = (unit(seed), copy_of(seed));
        let sem = store.load_embeddings(db, Descriptor::Semantic).unwrap();
        let cop = store.load_embeddings(db, Descriptor::Copy).unwrap();
        let mut scored: Vec<(f32, DataId)> = records
            .iter()
            .filter(|r| f.matches(&r.attributes))
            .map(|r| {
                let i = sem.ids.iter().position(|x| *x == r.data_id).unwrap();
                let s = crate::embedding::dot(&q, sem.vector(i).unwrap());
                let c = crate::embedding::dot(&qc, cop.vector(i).unwrap());
                let score =
                    crate::rules::fused_score(crate::store::DbDescriptors::Both, Some(s), Some(c));
                (score, r.data_id)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(10).map(|(_, id)| id).collect()
    };
    for threshold in [10_000, 100] {
        let indexes = DbIndexes::open(store.clone(), settings(dir.path(), threshold)).unwrap();
        let ix = indexes.get("t", "shop").unwrap();
        assert_eq!(ix.is_ann(), threshold == 100);
        for text in [
            "int_attr = 3",
            "int_attr != 3",
            "int_attr in (1, 2) OR int_attr > 8",
        ] {
            let f = Filter::parse(text).unwrap();
            for seed in [13, 14, 1005] {
                let q = QueryVectors {
                    semantic: vec![unit(seed)],
                    copy: Some(copy_of(seed)),
                };
                let (hits, _) = ix.search(store.as_ref(), &q, 10, 40, Some(&f)).unwrap();
                let got: Vec<DataId> = hits.iter().map(|h| h.id).collect();
                assert_eq!(
                    got,
                    truth(seed, &f),
                    "threshold {threshold}, {text}, seed {seed}"
                );
            }
        }
        // An update moves an image into the filter at once.
        let id = records[14].data_id;
        let mut a = crate::store::Attributes::NONE;
        a.ints[0] = Some(3);
        ix.set_attributes([(id, &a)]);
        let q = QueryVectors {
            semantic: vec![unit(14)],
            copy: Some(copy_of(14)),
        };
        let f = Filter::parse("int_attr = 3").unwrap();
        assert_eq!(
            ix.search(store.as_ref(), &q, 1, 40, Some(&f)).unwrap().0[0].id,
            id
        );
        ix.set_attributes([(id, &records[14].attributes)]);
    }
}
