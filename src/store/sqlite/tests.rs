//! Tests of the SQLite store: behaviour through the `ImageStore` trait, plus the file-level
//! properties (pragmas, migrations, corruption, crash durability) only this backend has.

use super::committer::{commit_group, OwnedImage};
use super::rows::{prefix_successor, sql_id};
use super::schema::MIGRATIONS;
use super::*;
use crate::embedding::{DbDescriptors, Descriptor, COPY_DIM};
use crate::store::{
    DbRef, EmbeddingSet, ImagePage, ImageRecord, ImageStore, ListQuery, NewImage, Order,
};
use rusqlite::params;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

const DIM: usize = 16;

fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir).unwrap()
}

/// A deterministic embedding distinct per seed.
fn emb(seed: u64, dim: usize) -> Vec<f32> {
    (0..dim)
        .map(|i| ((seed * 31 + i as u64) % 1000) as f32 / 7.0 - 50.0)
        .collect()
}

fn img<'a>(entity_id: &'a str, embedding: &'a [f32]) -> NewImage<'a> {
    NewImage {
        entity_id,
        extra_data: "",
        image_url: "http://127.0.0.1/x.jpg",
        embedding,
        copy_embedding: None,
        thumbnail: None,
        attributes: &crate::store::Attributes::NONE,
    }
}

/// Adds `entities.len()` images in batches of 500 (one transaction each) to keep tests fast;
/// returns their ids in order.
fn add_many(store: &SqliteStore, db: DbRef<'_>, entities: &[String]) -> Vec<DataId> {
    let embs: Vec<Vec<f32>> = (0..entities.len()).map(|i| emb(i as u64, DIM)).collect();
    let mut ids = Vec::new();
    for (chunk_e, chunk_v) in entities.chunks(500).zip(embs.chunks(500)) {
        let batch: Vec<NewImage<'_>> = chunk_e
            .iter()
            .zip(chunk_v)
            .map(|(e, v)| img(e, v))
            .collect();
        ids.extend(
            store
                .add_images(db, &batch)
                .unwrap()
                .iter()
                .map(|r| r.data_id),
        );
    }
    ids
}

fn list_all(
    store: &SqliteStore,
    db: DbRef<'_>,
    order: Order,
    prefix: Option<&str>,
) -> Vec<ImageRecord> {
    let q = ListQuery {
        order,
        entity_id_prefix: prefix,
        after: None,
        filter: None,
        offset: 0,
        limit: u32::MAX - 1,
    };
    store.list_images(db, &q).unwrap().images
}

fn raw_conn(dir: &Path) -> Connection {
    Connection::open(dir.join(DB_FILE_NAME)).unwrap()
}

#[test]
fn open_sets_wal_full_sync_and_foreign_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("nested/data");
    let store = open(&data_dir);
    assert!(store.path().exists());
    let w = store.writer();
    let mode: String = w
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    let sync: i64 = w
        .conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    let fk: i64 = w
        .conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    let version: i64 = w
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!((mode.as_str(), sync, fk), ("wal", 2, 1));
    assert_eq!(version, MIGRATIONS.len() as i64);
}

#[test]
fn create_list_delete_db_with_tenant_isolation() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = DbRef::new("AK_A", "default");
    let b = DbRef::new("AK_B", "default");
    store.create_db(a).unwrap();
    store.create_db(DbRef::new("AK_A", "zoo_2")).unwrap();
    store.create_db(b).unwrap();

    let names = |t: &str| -> Vec<String> {
        store
            .list_dbs(t)
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect()
    };
    assert_eq!(names("AK_A"), ["default", "zoo_2"]);
    assert_eq!(names("AK_B"), ["default"]);
    assert!(names("AK_C").is_empty());
    assert_eq!(store.list_all_dbs().unwrap().len(), 3);

    // Same name, different tenants: images do not cross over.
    let v = emb(1, DIM);
    store.add_image(a, &img("e1", &v)).unwrap();
    assert_eq!(store.get_db(a).unwrap().unwrap().image_count, 1);
    assert_eq!(store.get_db(b).unwrap().unwrap().image_count, 0);
    assert!(list_all(&store, b, Order::Asc, None).is_empty());

    store.delete_db(a).unwrap();
    assert_eq!(names("AK_A"), ["zoo_2"]);
    assert!(store.get_db(a).unwrap().is_none());
    assert!(
        store.get_db(b).unwrap().is_some(),
        "the other tenant's db stays"
    );
    assert!(matches!(store.delete_db(a), Err(StoreError::DbNotFound(n)) if n == "default"));
    assert!(matches!(
        store.list_images(
            a,
            &ListQuery {
                order: Order::Asc,
                entity_id_prefix: None,
                after: None,
                filter: None,
                offset: 0,
                limit: 10
            }
        ),
        Err(StoreError::DbNotFound(_))
    ));
    assert!(matches!(
        store.add_image(a, &img("e", &v)),
        Err(StoreError::DbNotFound(_))
    ));
    assert!(matches!(
        store.delete_entity(a, "e"),
        Err(StoreError::DbNotFound(_))
    ));
    // The name is free again and the new db starts empty.
    store.create_db(a).unwrap();
    assert_eq!(store.get_db(a).unwrap().unwrap().image_count, 0);
}

#[test]
fn duplicate_db_is_db_exists_and_bad_names_are_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create_db(DbRef::new("t", "default")).unwrap();
    assert!(matches!(
        store.create_db(DbRef::new("t", "default")),
        Err(StoreError::DbExists(n)) if n == "default"
    ));
    for bad in ["a", "Default", "a-b", ""] {
        assert!(
            matches!(
                store.create_db(DbRef::new("t", bad)),
                Err(StoreError::Invalid(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn delete_db_removes_images_vectors_and_thumbnails() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let db = DbRef::new("t", "gone");
    let keep = DbRef::new("t", "kept");
    store.create_db(db).unwrap();
    store.create_db(keep).unwrap();
    let v = emb(3, DIM);
    for e in ["a", "b", "c"] {
        let mut i = img(e, &v);
        i.thumbnail = Some(b"jpeg");
        store.add_image(db, &i).unwrap();
    }
    let kept = store
        .add_image(
            keep,
            &NewImage {
                thumbnail: Some(b"k"),
                attributes: &crate::store::Attributes::NONE,
                ..img("k", &v)
            },
        )
        .unwrap();
    store.delete_db(db).unwrap();
    let c = raw_conn(dir.path());
    for table in ["images", "image_vectors", "image_thumbnails"] {
        let n: i64 = c
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1, "{table} keeps only the other db's row");
    }
    assert_eq!(
        store.get_thumbnail(keep, kept.data_id).unwrap().as_deref(),
        Some(&b"k"[..])
    );
}

#[test]
fn add_list_and_delete_entity() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let db = DbRef::new("t", "default");
    store.create_db(db).unwrap();
    let v = emb(5, DIM);
    let before = now_millis();
    let first = store
        .add_image(
            db,
            &NewImage {
                extra_data: "风景 a*b~c",
                image_url: "http://h/a.png",
                ..img("shoe", &v)
            },
        )
        .unwrap();
    let second = store.add_image(db, &img("shoe", &v)).unwrap();
    let third = store.add_image(db, &img("hat", &v)).unwrap();
    assert!(first.data_id < second.data_id && second.data_id < third.data_id);
    assert!(first.created_at >= before && first.created_at <= now_millis());
    assert_eq!(first.updated_at, first.created_at);
    assert_eq!(
        first.data_id.to_string().len(),
        16,
        "16-digit microsecond ids"
    );

    let listed = list_all(&store, db, Order::Asc, None);
    assert_eq!(listed, vec![first.clone(), second.clone(), third.clone()]);
    let info = store.get_db(db).unwrap().unwrap();
    assert_eq!((info.image_count, info.dim), (3, Some(DIM)));

    assert_eq!(
        store.delete_entity(db, "shoe").unwrap(),
        vec![first.data_id, second.data_id]
    );
    assert!(
        store.delete_entity(db, "shoe").unwrap().is_empty(),
        "second delete finds nothing"
    );
    assert!(store.delete_entity(db, "nobody").unwrap().is_empty());
    assert_eq!(list_all(&store, db, Order::Asc, None), vec![third.clone()]);
    assert_eq!(store.get_db(db).unwrap().unwrap().image_count, 1);
    // Deleting images also deleted their vectors (cascade).
    let n: i64 = raw_conn(dir.path())
        .query_row("SELECT count(*) FROM image_vectors", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);

    // Emptying the db releases its dimension.
    store.delete_entity(db, "hat").unwrap();
    let info = store.get_db(db).unwrap().unwrap();
    assert_eq!((info.image_count, info.dim), (0, None));
    let other_dim = emb(1, DIM * 2);
    store.add_image(db, &img("x", &other_dim)).unwrap();
}

#[test]
fn dimension_mismatch_and_bad_embeddings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let db = DbRef::new("t", "default");
    store.create_db(db).unwrap();
    let v = emb(1, DIM);
    store.add_image(db, &img("a", &v)).unwrap();
    let short = emb(1, DIM - 1);
    assert!(matches!(
        store.add_image(db, &img("a", &short)),
        Err(StoreError::DimensionMismatch { expected: DIM, got, .. }) if got == DIM - 1
    ));
    // Within one batch too, and the batch is all-or-nothing.
    assert!(matches!(
        store.add_images(db, &[img("b", &v), img("b", &short)]),
        Err(StoreError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        store.add_image(db, &img("c", &[])),
        Err(StoreError::Invalid(_))
    ));
    let nan = vec![f32::NAN; DIM];
    assert!(matches!(
        store.add_image(db, &img("c", &nan)),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.get_db(db).unwrap().unwrap().image_count, 1);
}

#[test]
fn max_images_per_db_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with(
        dir.path(),
        StoreOptions {
            max_images_per_db: Some(3),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let db = DbRef::new("t", "default");
    store.create_db(db).unwrap();
    let v = emb(1, DIM);
    store.add_images(db, &[img("a", &v), img("b", &v)]).unwrap();
    assert!(matches!(
        store.add_images(db, &[img("c", &v), img("d", &v)]),
        Err(StoreError::DbFull { limit: 3, .. })
    ));
    store.add_image(db, &img("c", &v)).unwrap();
    assert!(matches!(
        store.add_image(db, &img("d", &v)),
        Err(StoreError::DbFull { .. })
    ));
    store.delete_entity(db, "a").unwrap();
    store.add_image(db, &img("d", &v)).unwrap();
}

#[test]
fn tenant_quotas_on_databases_and_images_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with(
        dir.path(),
        StoreOptions {
            max_databases_per_tenant: Some(2),
            max_images_per_tenant: Some(3),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let (a1, a2, a3) = (
        DbRef::new("a", "one"),
        DbRef::new("a", "two"),
        DbRef::new("a", "three"),
    );
    store.create_db(a1).unwrap();
    store.create_db(a2).unwrap();
    assert!(matches!(
        store.create_db(a3),
        Err(StoreError::TenantDatabaseQuota { limit: 2 })
    ));
    // An existing name is still "exists", not "quota".
    assert!(matches!(store.create_db(a1), Err(StoreError::DbExists(_))));
    // Another tenant is not affected.
    store.create_db(DbRef::new("b", "one")).unwrap();
    let v = emb(1, DIM);
    store.add_images(a1, &[img("x", &v), img("y", &v)]).unwrap();
    // Counted over the tenant's databases together, all or nothing.
    assert!(matches!(
        store.add_images(a2, &[img("z", &v), img("w", &v)]),
        Err(StoreError::TenantImageQuota { held: 2, limit: 3 })
    ));
    store.add_image(a2, &img("z", &v)).unwrap();
    assert!(matches!(
        store.add_image(a1, &img("w", &v)),
        Err(StoreError::TenantImageQuota { .. })
    ));
    store
        .add_images(
            DbRef::new("b", "one"),
            &[img("p", &v), img("q", &v), img("r", &v)],
        )
        .unwrap();
    // Deleting frees room: a database, then images.
    store.delete_db(a2).unwrap();
    store.create_db(a3).unwrap();
    store.add_image(a3, &img("w", &v)).unwrap();
}

#[test]
fn data_id_generator_handles_same_microsecond_and_clock_step_back() {
    let mut ids = DataIdGen { last: 0 };
    let mut prev = ids.next(1_585_903_814_940_000).unwrap();
    assert_eq!(
        prev.as_u64(),
        1_585_903_814_940_000,
        "follows the clock when it can"
    );
    for i in 0..10_000u64 {
        // A stuck clock, then one that jumps back by a second, then forward again.
        let clock = match i {
            0..=3_999 => 1_585_903_814_940_000,
            4_000..=7_999 => 1_585_903_813_940_000,
            _ => 1_585_903_815_000_000 + i,
        };
        let id = ids.next(clock).unwrap();
        assert!(id > prev, "step {i}: {id} after {prev}");
        prev = id;
    }
    assert_eq!(prev.as_u64(), 1_585_903_815_000_000 + 9_999);
}

#[test]
fn data_ids_strictly_increase_over_10000_adds_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = DbRef::new("t", "default");
    let mut all = Vec::new();
    {
        let store = open(dir.path());
        store.create_db(db).unwrap();
        // 10,000 adds as fast as possible: many land in the same microsecond.
        let entities: Vec<String> = (0..10_000).map(|i| format!("e{i}")).collect();
        all.extend(add_many(&store, db, &entities));
        let v = emb(0, DIM);
        for _ in 0..20 {
            all.push(store.add_image(db, &img("single", &v)).unwrap().data_id);
        }
        // Delete the newest: the restarted generator must still not reuse its id.
        store.delete_entity(db, "single").unwrap();
    }
    assert!(all.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
    let store = open(dir.path());
    let newest = *all.last().unwrap();
    // The newest ids were deleted; the stored floor still covers them, so even a clock that
    // went far back cannot make the restarted generator reuse one.
    let seed = seed_data_id(&store.writer().conn).unwrap();
    assert_eq!(seed, newest.as_u64());
    assert!(DataIdGen { last: seed }.next(1).unwrap() > newest);
    let v = emb(0, DIM);
    let after = store.add_image(db, &img("later", &v)).unwrap();
    assert!(after.data_id > newest, "{} after reopen", after.data_id);
    let listed: Vec<DataId> = list_all(&store, db, Order::Asc, None)
        .iter()
        .map(|r| r.data_id)
        .collect();
    assert_eq!(listed.len(), 10_001);
    assert!(listed.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn prefix_successor_edge_cases() {
    assert_eq!(prefix_successor("abc").as_deref(), Some("abd"));
    assert_eq!(prefix_successor("a_").as_deref(), Some("a`"));
    assert_eq!(prefix_successor("a%").as_deref(), Some("a&"));
    assert_eq!(prefix_successor("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
    assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
    assert_eq!(prefix_successor("\u{10FFFF}\u{10FFFF}"), None);
    assert_eq!(prefix_successor(""), None);
}

#[test]
fn entity_prefix_is_literal_for_underscore_and_percent() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let db = DbRef::new("t", "default");
    store.create_db(db).unwrap();
    let entities = [
        "a_b",
        "axb",
        "a_",
        "a",
        "a%c",
        "abc",
        "a%",
        "ab",
        "b_1",
        "a_b_c",
        "A_b",
        "a\u{10FFFF}x",
        "a\u{10FFFF}",
        "b",
        "é_1",
        "éx",
    ];
    let owned: Vec<String> = entities.iter().map(|s| s.to_string()).collect();
    add_many(&store, db, &owned);
    let matching = |prefix: &str| -> Vec<String> {
        let mut got: Vec<String> = list_all(&store, db, Order::Asc, Some(prefix))
            .into_iter()
            .map(|r| r.entity_id)
            .collect();
        got.sort();
        let q = ListQuery {
            order: Order::Desc,
            entity_id_prefix: Some(prefix),
            after: None,
            filter: None,
            offset: 0,
            limit: 1,
        };
        assert_eq!(
            store.list_images(db, &q).unwrap().total_count,
            got.len() as u64,
            "{prefix:?}"
        );
        got
    };
    let expected = |prefix: &str| -> Vec<String> {
        let mut e: Vec<String> = owned
            .iter()
            .filter(|s| s.starts_with(prefix))
            .cloned()
            .collect();
        e.sort();
        e
    };
    for prefix in [
        "a_",
        "a%",
        "a",
        "ab",
        "_",
        "%",
        "a\u{10FFFF}",
        "é_",
        "é",
        "b",
        "zz",
        "a_b",
    ] {
        assert_eq!(matching(prefix), expected(prefix), "prefix {prefix:?}");
    }
    // Spot checks of what LIKE would have got wrong.
    assert_eq!(matching("a_"), ["a_", "a_b", "a_b_c"]);
    assert_eq!(matching("a%"), ["a%", "a%c"]);
    // No prefix and an empty prefix both mean everything.
    assert_eq!(
        list_all(&store, db, Order::Asc, Some("")).len(),
        entities.len()
    );
}

#[test]
fn order_offset_limit_and_total_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let db = DbRef::new("t", "default");
    store.create_db(db).unwrap();
    let entities: Vec<String> = (0..50u32)
        .map(|i| format!("{}_{i}", if i.is_multiple_of(5) { "five" } else { "other" }))
        .collect();
    let ids = add_many(&store, db, &entities);
    let page = |order, prefix, after, offset, limit| {
        store
            .list_images(
                db,
                &ListQuery {
                    order,
                    entity_id_prefix: prefix,
                    after,
                    filter: None,
                    offset,
                    limit,
                },
            )
            .unwrap()
    };
    let idsof = |p: &ImagePage| p.images.iter().map(|r| r.data_id).collect::<Vec<_>>();

    let p = page(Order::Asc, None, None, 0, 10);
    assert_eq!(idsof(&p), ids[..10]);
    assert_eq!((p.total_count, p.has_more), (50, true));
    let p = page(Order::Desc, None, None, 0, 10);
    let rev: Vec<DataId> = ids.iter().rev().copied().collect();
    assert_eq!(idsof(&p), rev[..10]);
    let p = page(Order::Asc, None, None, 45, 10);
    assert_eq!(idsof(&p), ids[45..]);
    assert_eq!((p.total_count, p.has_more), (50, false));
    let p = page(Order::Asc, None, None, 40, 10);
    assert!(!p.has_more, "an exactly full last page has no successor");
    let p = page(Order::Desc, None, None, 60, 10);
    assert!(p.images.is_empty() && p.total_count == 50 && !p.has_more);
    // Keyset plus offset: skip 2 after the cursor.
    let p = page(Order::Asc, None, Some(ids[9]), 2, 3);
    assert_eq!(idsof(&p), ids[12..15]);
    let p = page(Order::Desc, None, Some(ids[9]), 0, 100);
    assert_eq!(idsof(&p), rev[41..]);
    assert_eq!(p.total_count, 50, "total ignores the cursor");
    // Prefix: total is the filtered total.
    let five: Vec<DataId> = ids.iter().step_by(5).copied().collect();
    let p = page(Order::Asc, Some("five_"), None, 0, 4);
    assert_eq!(idsof(&p), five[..4]);
    assert_eq!((p.total_count, p.has_more), (10, true));
    let p = page(Order::Desc, Some("five_"), Some(five[5]), 1, 100);
    assert_eq!(idsof(&p), [five[3], five[2], five[1], five[0]]);
    // Limit 0 is a count-only query.
    let p = page(Order::Asc, None, None, 0, 0);
    assert!(p.images.is_empty() && p.total_count == 50 && p.has_more);
}

/// Pages through more than 2,000 images with the keyset cursor while another thread adds
/// images and deletes entities: every image that existed throughout is returned exactly once.
#[test]
fn keyset_paging_survives_concurrent_inserts_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let db = DbRef::new("t", "default");
    store.create_db(db).unwrap();
    let entities: Vec<String> = (0..2_400).map(|i| format!("e{:03}", i % 300)).collect();
    let initial: Vec<DataId> = add_many(&store, db, &entities);
    // Everything deleted in any pass: those ids may legitimately be missing from later passes.
    let deleted = Arc::new(Mutex::new(HashSet::new()));

    for (order, prefix) in [
        (Order::Asc, None),
        (Order::Desc, None),
        (Order::Asc, Some("e1")),
    ] {
        let stop = Arc::new(AtomicBool::new(false));
        let churn = {
            let (store, stop, deleted) = (store.clone(), stop.clone(), deleted.clone());
            std::thread::spawn(move || {
                let db = DbRef::new("t", "default");
                let v = emb(9, DIM);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    store
                        .add_image(db, &img(&format!("e{:03}", n % 300), &v))
                        .unwrap();
                    if n.is_multiple_of(3) {
                        let gone = store
                            .delete_entity(db, &format!("e{:03}", (n * 7) % 300))
                            .unwrap();
                        deleted.lock().unwrap().extend(gone);
                    }
                    n += 1;
                }
                n
            })
        };
        let mut seen = Vec::new();
        let mut after = None;
        let mut pages = 0;
        loop {
            let q = ListQuery {
                order,
                entity_id_prefix: prefix,
                after,
                filter: None,
                offset: 0,
                limit: 100,
            };
            let page = store.list_images(db, &q).unwrap();
            seen.extend(page.images.iter().map(|r| r.data_id));
            pages += 1;
            // Between pages the main thread writes too, so interleaving is certain.
            let v = emb(8, DIM);
            store.add_image(db, &img("e150", &v)).unwrap();
            let gone = store
                .delete_entity(db, &format!("e{:03}", (pages * 13) % 300))
                .unwrap();
            deleted.lock().unwrap().extend(gone);
            match (page.has_more, page.images.last()) {
                (true, Some(last)) => after = Some(last.data_id),
                _ => break,
            }
            assert!(pages < 1_000, "paging does not terminate");
        }
        stop.store(true, Ordering::Relaxed);
        let churned = churn.join().unwrap();

        let unique: HashSet<DataId> = seen.iter().copied().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "{order:?}: a record was returned twice"
        );
        let ordered = seen.windows(2).all(|w| match order {
            Order::Asc => w[0] < w[1],
            Order::Desc => w[0] > w[1],
        });
        assert!(ordered, "{order:?}: pages are not in order");
        let deleted_now = deleted.lock().unwrap();
        let in_scope = |i: usize| prefix.is_none_or(|p| entities[i].starts_with(p));
        let survivors: Vec<DataId> = initial
            .iter()
            .enumerate()
            .filter(|&(i, id)| in_scope(i) && !deleted_now.contains(id))
            .map(|(_, id)| *id)
            .collect();
        assert!(
            survivors.len() > 100,
            "the test must leave survivors to check"
        );
        let missing: Vec<&DataId> = survivors.iter().filter(|id| !unique.contains(id)).collect();
        assert!(
            missing.is_empty(),
            "{order:?}/{prefix:?}: skipped {} survivors",
            missing.len()
        );
        assert!(pages > 2, "{pages} pages, {churned} concurrent adds");
        eprintln!(
            "{order:?}/{prefix:?}: {pages} pages, {} survivors checked, {churned} concurrent adds, {} deleted so far",
            survivors.len(),
            deleted_now.len()
        );
    }
    assert_eq!(
        store.get_db(db).unwrap().unwrap().image_count,
        list_all(&store, db, Order::Asc, None).len() as u64,
        "the maintained count matches the rows"
    );
}

#[test]
fn get_images_keeps_the_given_order_and_skips_missing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let db = DbRef::new("t", "default");
    let other = DbRef::new("u", "default");
    store.create_db(db).unwrap();
    store.create_db(other).unwrap();
    let ids = add_many(&store, db, &["a".into(), "b".into(), "c".into()]);
    let foreign = add_many(&store, other, &["z".into()]);
    let missing = DataId::from_u64(1).unwrap();
    let got = store
        .get_images(db, &[ids[2], missing, ids[0], foreign[0]])
        .unwrap();
    let got: Vec<(DataId, &str, &str)> = got
        .iter()
        .map(|r| (r.data_id, r.entity_id.as_str(), r.image_url.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (ids[2], "c", "http://127.0.0.1/x.jpg"),
            (ids[0], "a", "http://127.0.0.1/x.jpg")
        ]
    );
}

#[test]
fn thumbnail_round_trip_and_isolation() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let db = DbRef::new("t", "default");
    let other = DbRef::new("u", "default");
    store.create_db(db).unwrap();
    store.create_db(other).unwrap();
    let v = emb(1, DIM);
    let jpeg: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let with = store
        .add_image(
            db,
            &NewImage {
                thumbnail: Some(&jpeg),
                attributes: &crate::store::Attributes::NONE,
                ..img("a", &v)
            },
        )
        .unwrap();
    let without = store.add_image(db, &img("b", &v)).unwrap();
    assert_eq!(store.get_thumbnail(db, with.data_id).unwrap(), Some(jpeg));
    assert_eq!(store.get_thumbnail(db, without.data_id).unwrap(), None);
    assert_eq!(
        store.get_thumbnail(other, with.data_id).unwrap(),
        None,
        "other tenant"
    );
    assert!(matches!(
        store.get_thumbnail(DbRef::new("t", "nope"), with.data_id),
        Err(StoreError::DbNotFound(_))
    ));
    store.delete_entity(db, "a").unwrap();
    assert_eq!(store.get_thumbnail(db, with.data_id).unwrap(), None);
}

#[test]
fn load_all_embeddings_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let db = DbRef::new("t", "default");
    store.create_db(db).unwrap();
    let dim = 1280;
    let vectors: Vec<Vec<f32>> = (0..300)
        .map(|i| {
            let mut v = emb(i, dim);
            v[0] = f32::MIN_POSITIVE * i as f32; // subnormal/odd bit patterns survive too
            v[1] = -0.0;
            v
        })
        .collect();
    let entities: Vec<String> = (0..300).map(|i| format!("e{i}")).collect();
    let batch: Vec<NewImage<'_>> = entities
        .iter()
        .zip(&vectors)
        .map(|(e, v)| img(e, v))
        .collect();
    let ids: Vec<DataId> = store
        .add_images(db, &batch)
        .unwrap()
        .iter()
        .map(|r| r.data_id)
        .collect();

    let mut visited = Vec::new();
    let n = store
        .for_each_embedding(db, Descriptor::Semantic, &mut |id, v| {
            let i = visited.len();
            assert_eq!(id, ids[i]);
            assert!(v
                .iter()
                .zip(&vectors[i])
                .all(|(a, b)| a.to_bits() == b.to_bits()));
            visited.push(id);
        })
        .unwrap();
    assert_eq!(n, 300);

    let set: EmbeddingSet = store.load_embeddings(db, Descriptor::Semantic).unwrap();
    assert_eq!(
        (set.dim, set.len(), set.vectors.len()),
        (dim, 300, 300 * dim)
    );
    assert_eq!(set.ids, ids);
    assert_eq!(set.vector(299).unwrap(), &vectors[299][..]);

    // Ids and embeddings by id: order given, missing and other tenants' ids skipped.
    assert_eq!(store.list_ids(db, Descriptor::Semantic).unwrap(), ids);
    let other = DbRef::new("u", "default");
    store.create_db(other).unwrap();
    let foreign = store
        .add_image(other, &img("x", &vectors[0]))
        .unwrap()
        .data_id;
    let wanted = [ids[7], foreign, DataId::from_u64(1).unwrap(), ids[2]];
    let got = store
        .get_embeddings(db, Descriptor::Semantic, &wanted)
        .unwrap();
    assert_eq!(got.ids, vec![ids[7], ids[2]]);
    assert_eq!(got.vector(0).unwrap(), &vectors[7][..]);
    assert_eq!(got.vector(1).unwrap(), &vectors[2][..]);
    assert_eq!(
        store.list_ids(other, Descriptor::Semantic).unwrap(),
        vec![foreign]
    );

    let empty = DbRef::new("t", "empty");
    store.create_db(empty).unwrap();
    assert!(store
        .list_ids(empty, Descriptor::Semantic)
        .unwrap()
        .is_empty());
    assert!(store
        .get_embeddings(empty, Descriptor::Semantic, &ids)
        .unwrap()
        .is_empty());
    assert!(store
        .load_embeddings(empty, Descriptor::Semantic)
        .unwrap()
        .is_empty());
    assert!(matches!(
        store.load_embeddings(DbRef::new("t", "nope"), Descriptor::Semantic),
        Err(StoreError::DbNotFound(_))
    ));
}

#[test]
fn corrupt_embedding_blob_is_a_corrupt_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let db = DbRef::new("t", "default");
    store.create_db(db).unwrap();
    let ids = add_many(&store, db, &["a".into(), "b".into()]);
    let c = raw_conn(dir.path());
    for bad in [&b"\x01\x02\x03"[..], &[0u8; 4 * (DIM + 1)][..], &[][..]] {
        c.execute(
            "UPDATE image_vectors SET vec = ?1 WHERE data_id = ?2",
            params![bad, sql_id(ids[1])],
        )
        .unwrap();
        let err = store
            .for_each_embedding(db, Descriptor::Semantic, &mut |_, _| {})
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Corrupt(ref m) if m.contains(&ids[1].to_string())),
            "{err}"
        );
        assert!(matches!(
            store.load_embeddings(db, Descriptor::Semantic),
            Err(StoreError::Corrupt(_))
        ));
    }
    c.execute(
        "DELETE FROM image_vectors WHERE data_id = ?1",
        [sql_id(ids[1])],
    )
    .unwrap();
    assert!(matches!(
        store.for_each_embedding(db, Descriptor::Semantic, &mut |_, _| {}),
        Err(StoreError::Corrupt(_))
    ));
    // Listing does not read vectors and keeps working.
    assert_eq!(list_all(&store, db, Order::Asc, None).len(), 2);
}

#[test]
fn future_schema_version_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let future = MIGRATIONS.len() as i64 + 1;
    raw_conn(dir.path())
        .pragma_update(None, "user_version", future)
        .unwrap();
    let err = SqliteStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, supported } if found == future && supported == future - 1),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade imgsearch"), "{err}");
    let still: i64 = raw_conn(dir.path())
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(still, future, "the file is left untouched");
}

#[test]
fn foreign_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    raw_conn(dir.path())
        .execute_batch("CREATE TABLE something_else(x);")
        .unwrap();
    assert!(matches!(
        SqliteStore::open(dir.path()),
        Err(StoreError::Corrupt(_))
    ));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DB_FILE_NAME), vec![0x42u8; 8192]).unwrap();
    assert!(matches!(
        SqliteStore::open(dir.path()),
        Err(StoreError::Corrupt(_))
    ));
}

#[test]
fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let db = DbRef::new("t", "default");
    let (ids, info) = {
        let store = open(dir.path());
        store.create_db(db).unwrap();
        let ids = add_many(&store, db, &["a".into(), "b".into()]);
        (ids, store.get_db(db).unwrap().unwrap())
    };
    let store = open(dir.path());
    assert_eq!(store.get_db(db).unwrap().unwrap(), info);
    let listed: Vec<DataId> = list_all(&store, db, Order::Asc, None)
        .iter()
        .map(|r| r.data_id)
        .collect();
    assert_eq!(listed, ids);
}

const CHILD_ENV: &str = "IMGSEARCH_TEST_DURABILITY_DIR";

/// Not a test by itself: the child process of `acknowledged_adds_survive_sigkill`. It adds
/// images in a loop and prints `ACK <data_id>` after each add returns, until it is killed
/// (or 30 s pass, so that an orphan ends on its own).
#[test]
#[ignore = "child process of acknowledged_adds_survive_sigkill"]
fn durability_child_process() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = open(Path::new(&dir));
    let db = DbRef::new("t", "durable");
    match store.create_db(db) {
        Ok(_) | Err(StoreError::DbExists(_)) => {}
        Err(e) => panic!("{e}"),
    }
    let v = emb(4, 1280);
    let thumb = vec![0xAB; 4096];
    let mut out = std::io::stdout().lock();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0u64;
    while Instant::now() < deadline {
        let entity = format!("e{}", n % 10);
        let rec = store
            .add_image(
                db,
                &NewImage {
                    thumbnail: Some(&thumb),
                    attributes: &crate::store::Attributes::NONE,
                    ..img(&entity, &v)
                },
            )
            .unwrap();
        // Written straight to fd 1 (not captured by the test harness) and flushed, so the
        // parent sees an id only after its add has returned.
        writeln!(out, "ACK {}", rec.data_id).unwrap();
        out.flush().unwrap();
        n += 1;
    }
}

#[test]
fn acknowledged_adds_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let db = DbRef::new("t", "durable");
    let mut acked_total: Vec<DataId> = Vec::new();
    for round in 0..3 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "store::sqlite::tests::durability_child_process",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(id) = line.strip_prefix("ACK ") {
                    let _ = tx.send(id.parse::<DataId>().unwrap());
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the child never added");
        let delay = 20 + getrandom::u64().unwrap() % 400;
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap(); // SIGKILL on Unix: no destructors, no flushes
        child.wait().unwrap();
        reader.join().unwrap();
        let acked: Vec<DataId> = std::iter::once(first).chain(rx.try_iter()).collect();
        assert!(acked.windows(2).all(|w| w[0] < w[1]));
        if let Some(prev) = acked_total.last() {
            assert!(
                acked[0] > *prev,
                "round {round}: ids go on increasing after the crash"
            );
        }
        acked_total.extend(&acked);

        let store = open(dir.path());
        let check: String = store
            .writer()
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "round {round}");
        let found = store.get_images(db, &acked_total).unwrap();
        assert_eq!(
            found.len(),
            acked_total.len(),
            "round {round}: an acknowledged add was lost"
        );
        let listed: HashSet<DataId> = list_all(&store, db, Order::Asc, None)
            .iter()
            .map(|r| r.data_id)
            .collect();
        assert!(
            acked_total.iter().all(|id| listed.contains(id)),
            "round {round}: not listable"
        );
        assert_eq!(
            store.get_db(db).unwrap().unwrap().image_count,
            listed.len() as u64
        );
        assert_eq!(
            store
                .load_embeddings(db, Descriptor::Semantic)
                .unwrap()
                .len(),
            listed.len()
        );
        eprintln!(
            "round {round}: killed after {delay} ms, {} acknowledged adds all present",
            acked.len()
        );
    }
}

#[test]
fn group_commit_undoes_only_the_failing_adds() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with(
        dir.path(),
        StoreOptions {
            max_images_per_db: Some(3),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let db = DbRef::new("t", "default");
    store.create_db(db).unwrap();
    let v = emb(1, DIM);
    store.add_image(db, &img("first", &v)).unwrap();
    let short = emb(1, DIM - 1);

    let mut receivers = Vec::new();
    let mut group = Vec::new();
    let cases: [(&str, Vec<NewImage<'_>>); 5] = [
        ("default", vec![img("ok1", &v)]),
        ("default", vec![img("bad_dim", &short)]),
        ("missing", vec![img("no_db", &v)]),
        ("default", vec![img("ok2", &v), img("too_many", &v)]),
        ("default", vec![img("ok3", &v)]),
    ];
    for (name, images) in &cases {
        let (reply, rx) = mpsc::channel();
        receivers.push(rx);
        group.push(PendingAdd {
            tenant: "t".into(),
            name: (*name).into(),
            images: images.iter().map(OwnedImage::from).collect(),
            reply,
        });
    }
    commit_group(&mut store.writer(), &store.options, group);
    let results: Vec<Result<Vec<ImageRecord>, StoreError>> =
        receivers.iter().map(|rx| rx.recv().unwrap()).collect();
    assert!(results[0].is_ok());
    assert!(matches!(
        results[1],
        Err(StoreError::DimensionMismatch { .. })
    ));
    assert!(matches!(results[2], Err(StoreError::DbNotFound(_))));
    assert!(
        matches!(results[3], Err(StoreError::DbFull { limit: 3, .. })),
        "all or nothing per caller"
    );
    assert!(results[4].is_ok());
    let entities: Vec<String> = list_all(&store, db, Order::Asc, None)
        .into_iter()
        .map(|r| r.entity_id)
        .collect();
    assert_eq!(entities, ["first", "ok1", "ok3"]);
    assert_eq!(store.get_db(db).unwrap().unwrap().image_count, 3);
}

#[test]
fn concurrent_adds_are_all_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let db = DbRef::new("t", "default");
    store.create_db(db).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let v = emb(t, DIM);
                (0..40)
                    .map(|i| {
                        let e = format!("t{t}_{i}");
                        let rec = store.add_image(db, &img(&e, &v)).unwrap();
                        assert_eq!(rec.entity_id, e, "each caller gets its own record");
                        rec.data_id
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids: Vec<DataId> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 320);
    let listed: Vec<DataId> = list_all(&store, db, Order::Asc, None)
        .iter()
        .map(|r| r.data_id)
        .collect();
    assert_eq!(listed, ids);
    assert_eq!(store.get_db(db).unwrap().unwrap().image_count, 320);
}

#[test]
fn copy_descriptors_are_stored_beside_the_embedding_and_deleted_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let db = DbRef::new("t", "both");
    let info = store.create_db(db).unwrap();
    assert_eq!(info.descriptors, DbDescriptors::Both);
    let copy_only = store
        .create_db_with(DbRef::new("t", "copies"), DbDescriptors::Copy)
        .unwrap();
    assert_eq!(copy_only.descriptors, DbDescriptors::Copy);
    let listed: Vec<_> = store
        .list_dbs("t")
        .unwrap()
        .into_iter()
        .map(|d| (d.name, d.descriptors))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("both".into(), DbDescriptors::Both),
            ("copies".into(), DbDescriptors::Copy)
        ]
    );

    let (v, c) = (emb(1, DIM), emb(2, COPY_DIM));
    let with = store
        .add_image(
            db,
            &NewImage {
                copy_embedding: Some(&c),
                ..img("a", &v)
            },
        )
        .unwrap()
        .data_id;
    let without = store.add_image(db, &img("b", &v)).unwrap().data_id;
    assert_eq!(store.list_ids(db, Descriptor::Copy).unwrap(), vec![with]);
    assert_eq!(
        store.list_ids(db, Descriptor::Semantic).unwrap(),
        vec![with, without]
    );
    let got = store
        .get_embeddings(db, Descriptor::Copy, &[without, with])
        .unwrap();
    assert_eq!((got.dim, got.ids.clone()), (COPY_DIM, vec![with]));
    assert_eq!(got.vector(0).unwrap(), &c[..]);
    let set = store.load_embeddings(db, Descriptor::Copy).unwrap();
    assert_eq!((set.dim, set.ids), (COPY_DIM, vec![with]));
    assert_eq!(store.ids_without_copy(db, None, 10).unwrap(), vec![without]);

    // A wrong-sized or non-finite descriptor is refused before anything is stored.
    let short = vec![0.5f32; COPY_DIM - 1];
    let mut nan = c.clone();
    nan[3] = f32::NAN;
    for bad in [&short, &nan] {
        let err = store
            .add_image(
                db,
                &NewImage {
                    copy_embedding: Some(bad),
                    ..img("x", &v)
                },
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        assert!(matches!(
            store.set_copy_embeddings(db, &[(without, bad.clone())]),
            Err(StoreError::Invalid(_))
        ));
    }
    assert_eq!(store.get_db(db).unwrap().unwrap().image_count, 2);

    // Deleting the entity deletes its descriptor (cascade).
    store.delete_entity(db, "a").unwrap();
    let n: i64 = raw_conn(dir.path())
        .query_row("SELECT count(*) FROM image_copy_vectors", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

/// A data directory written before copy descriptors existed (schema v1, as the previous
/// release left it) opens, migrates in place and keeps every image.
#[test]
fn a_version_1_store_migrates_and_keeps_its_images() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = raw_conn(dir.path());
        c.execute_batch("PRAGMA journal_mode=WAL;").unwrap();
        c.execute_batch(MIGRATIONS[0]).unwrap();
        c.execute_batch(&format!(
            "PRAGMA user_version = 1; PRAGMA application_id = {};",
            super::schema::APPLICATION_ID
        ))
        .unwrap();
        c.execute(
            "INSERT INTO image_dbs(id, tenant, name, created_at, image_count, dim) VALUES (1, 't', 'old', 1, 1, ?1)",
            [DIM as i64],
        )
        .unwrap();
        c.execute(
            "INSERT INTO images VALUES (1585903814940000, 1, 'e', '', 'http://x/y.jpg', 1, 1)",
            [],
        )
        .unwrap();
        let mut blob = Vec::new();
        super::rows::encode_embedding(&emb(9, DIM), &mut blob);
        c.execute(
            "INSERT INTO image_vectors VALUES (1585903814940000, ?1)",
            [blob],
        )
        .unwrap();
    }
    let store = open(dir.path());
    let db = DbRef::new("t", "old");
    let info = store.get_db(db).unwrap().unwrap();
    assert_eq!(
        (info.image_count, info.descriptors),
        (1, DbDescriptors::Both)
    );
    let id = DataId::from_u64(1_585_903_814_940_000).unwrap();
    assert_eq!(store.list_ids(db, Descriptor::Semantic).unwrap(), vec![id]);
    assert!(store.list_ids(db, Descriptor::Copy).unwrap().is_empty());
    assert_eq!(store.ids_without_copy(db, None, 5).unwrap(), vec![id]);
    let version: i64 = raw_conn(dir.path())
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, MIGRATIONS.len() as i64);
}
