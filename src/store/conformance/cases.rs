//! The cases of the suite (except attributes, in `attributes`), each through the trait only.
//! Ported from the SQLite store's own tests, with table counts replaced by what the trait
//! shows (thumbnails, vectors and ids of deleted images are gone).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::Backend;
use crate::embedding::{DbDescriptors, Descriptor, COPY_DIM};
use crate::store::{
    Attributes, DataId, DbRef, EmbeddingSet, ImagePage, ImageRecord, ImageStore, ListQuery,
    NewImage, NewUpload, Order, StoreError, StoreOptions,
};

pub(super) use super::attributes::{
    attributes_round_trip_and_filters_agree_with_memory,
    updates_set_only_what_is_given_and_the_table_reads_them,
};

const DIM: usize = 16;

/// A deterministic embedding distinct per seed.
pub(super) fn emb(seed: u64, dim: usize) -> Vec<f32> {
    (0..dim)
        .map(|i| ((seed * 31 + i as u64) % 1000) as f32 / 7.0 - 50.0)
        .collect()
}

pub(super) fn img<'a>(entity_id: &'a str, embedding: &'a [f32]) -> NewImage<'a> {
    NewImage {
        entity_id,
        extra_data: "",
        image_url: "http://127.0.0.1/x.jpg",
        embedding,
        copy_embedding: None,
        thumbnail: None,
        attributes: &Attributes::NONE,
    }
}

fn open(b: &dyn Backend) -> Arc<dyn ImageStore> {
    b.open(StoreOptions::default())
}

/// Adds the entities in batches of 500 (one transaction each); their ids in order.
fn add_many(store: &dyn ImageStore, db: DbRef<'_>, entities: &[String]) -> Vec<DataId> {
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

fn query(order: Order, prefix: Option<&str>, limit: u32) -> ListQuery<'_> {
    ListQuery {
        order,
        entity_id_prefix: prefix,
        after: None,
        filter: None,
        offset: 0,
        limit,
    }
}

fn list_all(
    store: &dyn ImageStore,
    db: DbRef<'_>,
    order: Order,
    prefix: Option<&str>,
) -> Vec<ImageRecord> {
    store
        .list_images(db, &query(order, prefix, u32::MAX - 1))
        .unwrap()
        .images
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(super) fn db_lifecycle_and_tenant_isolation(b: &dyn Backend) {
    let store = open(b);
    let a = DbRef::new("AK_A", "default");
    let bb = DbRef::new("AK_B", "default");
    store.create_db(a).unwrap();
    store.create_db(DbRef::new("AK_A", "zoo_2")).unwrap();
    store.create_db(bb).unwrap();
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
    let all: Vec<(String, String)> = store
        .list_all_dbs()
        .unwrap()
        .into_iter()
        .map(|d| (d.tenant, d.name))
        .collect();
    assert_eq!(
        all,
        [
            ("AK_A".into(), "default".into()),
            ("AK_A".into(), "zoo_2".into()),
            ("AK_B".into(), "default".into())
        ],
        "by tenant, then name"
    );
    let v = emb(1, DIM);
    store.add_image(a, &img("e1", &v)).unwrap();
    assert_eq!(store.get_db(a).unwrap().unwrap().image_count, 1);
    assert_eq!(store.get_db(bb).unwrap().unwrap().image_count, 0);
    assert!(list_all(&*store, bb, Order::Asc, None).is_empty());

    store.delete_db(a).unwrap();
    assert_eq!(names("AK_A"), ["zoo_2"]);
    assert!(store.get_db(a).unwrap().is_none());
    assert!(
        store.get_db(bb).unwrap().is_some(),
        "the other tenant's db stays"
    );
    assert!(matches!(store.delete_db(a), Err(StoreError::DbNotFound(n)) if n == "default"));
    assert!(matches!(
        store.list_images(a, &query(Order::Asc, None, 10)),
        Err(StoreError::DbNotFound(_))
    ));
    assert!(matches!(
        store.add_image(a, &img("e", &v)),
        Err(StoreError::DbNotFound(_))
    ));
    assert!(matches!(
        store.add_images(a, &[]),
        Err(StoreError::DbNotFound(_))
    ));
    assert!(matches!(
        store.delete_entity(a, "e"),
        Err(StoreError::DbNotFound(_))
    ));
    // The name is free again and the new db starts empty.
    store.create_db(a).unwrap();
    assert_eq!(store.get_db(a).unwrap().unwrap().image_count, 0);
    assert!(store.add_images(a, &[]).unwrap().is_empty());
}

pub(super) fn duplicate_db_is_db_exists_and_bad_names_are_invalid(b: &dyn Backend) {
    let store = open(b);
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

pub(super) fn delete_db_removes_images_vectors_and_thumbnails(b: &dyn Backend) {
    let store = open(b);
    let db = DbRef::new("t", "gone");
    let keep = DbRef::new("t", "kept");
    store.create_db(db).unwrap();
    store.create_db(keep).unwrap();
    let v = emb(3, DIM);
    let mut gone = Vec::new();
    for e in ["a", "b", "c"] {
        let mut i = img(e, &v);
        i.thumbnail = Some(b"jpeg");
        gone.push(store.add_image(db, &i).unwrap().data_id);
    }
    let kept = store
        .add_image(
            keep,
            &NewImage {
                thumbnail: Some(b"k"),
                ..img("k", &v)
            },
        )
        .unwrap();
    store.delete_db(db).unwrap();
    for id in &gone {
        assert_eq!(
            store.thumbnail_by_id(*id).unwrap(),
            None,
            "thumbnail of {id}"
        );
    }
    // Re-created under the same name, it holds none of the old images or vectors.
    store.create_db(db).unwrap();
    assert!(store
        .get_embeddings(db, Descriptor::Semantic, &gone)
        .unwrap()
        .is_empty());
    assert!(store.list_ids(db, Descriptor::Semantic).unwrap().is_empty());
    assert_eq!(
        store.get_thumbnail(keep, kept.data_id).unwrap().as_deref(),
        Some(&b"k"[..])
    );
    assert_eq!(
        store.thumbnail_by_id(kept.data_id).unwrap().as_deref(),
        Some(&b"k"[..])
    );
}

pub(super) fn add_list_and_delete_entity(b: &dyn Backend) {
    let store = open(b);
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
                thumbnail: Some(b"t1"),
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

    let listed = list_all(&*store, db, Order::Asc, None);
    assert_eq!(listed, vec![first.clone(), second.clone(), third.clone()]);
    let info = store.get_db(db).unwrap().unwrap();
    assert_eq!((info.image_count, info.dim), (3, Some(DIM)));

    assert_eq!(
        store.delete_entity(db, "shoe").unwrap(),
        vec![first.data_id, second.data_id]
    );
    assert!(store.delete_entity(db, "shoe").unwrap().is_empty());
    assert!(store.delete_entity(db, "nobody").unwrap().is_empty());
    assert_eq!(list_all(&*store, db, Order::Asc, None), vec![third.clone()]);
    assert_eq!(store.get_db(db).unwrap().unwrap().image_count, 1);
    // Their vectors and thumbnails went with them.
    let got = store
        .get_embeddings(db, Descriptor::Semantic, &[first.data_id, third.data_id])
        .unwrap();
    assert_eq!(got.ids, vec![third.data_id]);
    assert_eq!(store.thumbnail_by_id(first.data_id).unwrap(), None);

    // Emptying the db releases its dimension.
    store.delete_entity(db, "hat").unwrap();
    let info = store.get_db(db).unwrap().unwrap();
    assert_eq!((info.image_count, info.dim), (0, None));
    let other_dim = emb(1, DIM * 2);
    store.add_image(db, &img("x", &other_dim)).unwrap();
    assert_eq!(store.get_db(db).unwrap().unwrap().dim, Some(DIM * 2));
}

pub(super) fn dimension_mismatch_and_bad_embeddings_are_refused(b: &dyn Backend) {
    let store = open(b);
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

pub(super) fn max_images_per_db_is_enforced(b: &dyn Backend) {
    let store = b.open(StoreOptions {
        max_images_per_db: Some(3),
        ..StoreOptions::default()
    });
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
    assert_eq!(store.get_db(db).unwrap().unwrap().image_count, 3);
}

pub(super) fn tenant_quotas_on_databases_and_images_are_enforced(b: &dyn Backend) {
    let store = b.open(StoreOptions {
        max_databases_per_tenant: Some(2),
        max_images_per_tenant: Some(3),
        ..StoreOptions::default()
    });
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

/// Eight threads race to create databases of one tenant whose quota is 3: exactly 3 win.
pub(super) fn concurrent_creates_respect_the_database_quota(b: &dyn Backend) {
    let store = b.open(StoreOptions {
        max_databases_per_tenant: Some(3),
        ..StoreOptions::default()
    });
    let results: Vec<Result<_, StoreError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                s.spawn(move || store.create_db(DbRef::new("t", &format!("db_{i}"))))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::TenantDatabaseQuota { limit: 3 })))
        .count();
    assert_eq!((won, refused), (3, 5), "{results:?}");
    assert_eq!(store.list_dbs("t").unwrap().len(), 3);
}

/// Ids increase over many adds, also after deleting the newest images and reopening.
pub(super) fn data_ids_strictly_increase_and_survive_reopen(b: &dyn Backend) {
    let db = DbRef::new("t", "default");
    let newest = {
        let store = open(b);
        store.create_db(db).unwrap();
        let v = emb(1, DIM);
        let mut last = DataId::from_u64(0).unwrap();
        // Single adds (each its own transaction) and batches.
        for i in 0..200 {
            let id = store
                .add_image(db, &img(&format!("e{i}"), &v))
                .unwrap()
                .data_id;
            assert!(id > last, "{id} after {last}");
            last = id;
        }
        let entities: Vec<String> = (0..1000).map(|i| format!("b{i}")).collect();
        let ids = add_many(&*store, db, &entities);
        assert!(ids.windows(2).all(|w| w[0] < w[1]) && ids[0] > last);
        let newest = *ids.last().unwrap();
        // Deleting the newest images must not let a later add reuse their ids.
        store.delete_entity(db, "b999").unwrap();
        store.delete_entity(db, "b998").unwrap();
        newest
    };
    let store = open(b);
    let v = emb(2, DIM);
    let after = store.add_image(db, &img("z", &v)).unwrap();
    assert!(after.data_id > newest, "{} after reopen", after.data_id);
    assert_eq!(store.get_db(db).unwrap().unwrap().image_count, 1199);
}

pub(super) fn entity_prefix_is_literal_for_underscore_and_percent(b: &dyn Backend) {
    let store = open(b);
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
        "a\\b",
    ];
    let owned: Vec<String> = entities.iter().map(|s| s.to_string()).collect();
    add_many(&*store, db, &owned);
    let matching = |prefix: &str| -> Vec<String> {
        let mut got: Vec<String> = list_all(&*store, db, Order::Asc, Some(prefix))
            .into_iter()
            .map(|r| r.entity_id)
            .collect();
        got.sort();
        assert_eq!(
            store
                .list_images(db, &query(Order::Desc, Some(prefix), 1))
                .unwrap()
                .total_count,
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
        "a\\",
    ] {
        assert_eq!(matching(prefix), expected(prefix), "prefix {prefix:?}");
    }
    assert_eq!(matching("a_"), ["a_", "a_b", "a_b_c"]);
    assert_eq!(matching("a%"), ["a%", "a%c"]);
    assert_eq!(
        list_all(&*store, db, Order::Asc, Some("")).len(),
        entities.len()
    );
}

pub(super) fn order_offset_limit_and_total_count(b: &dyn Backend) {
    let store = open(b);
    let db = DbRef::new("t", "default");
    store.create_db(db).unwrap();
    let entities: Vec<String> = (0..50u32)
        .map(|i| format!("{}_{i}", if i.is_multiple_of(5) { "five" } else { "other" }))
        .collect();
    let ids = add_many(&*store, db, &entities);
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
    let rev: Vec<DataId> = ids.iter().rev().copied().collect();
    assert_eq!(idsof(&page(Order::Desc, None, None, 0, 10)), rev[..10]);
    let p = page(Order::Asc, None, None, 45, 10);
    assert_eq!(idsof(&p), ids[45..]);
    assert_eq!((p.total_count, p.has_more), (50, false));
    assert!(!page(Order::Asc, None, None, 40, 10).has_more);
    let p = page(Order::Desc, None, None, 60, 10);
    assert!(p.images.is_empty() && p.total_count == 50 && !p.has_more);
    assert_eq!(
        idsof(&page(Order::Asc, None, Some(ids[9]), 2, 3)),
        ids[12..15]
    );
    let p = page(Order::Desc, None, Some(ids[9]), 0, 100);
    assert_eq!(idsof(&p), rev[41..]);
    assert_eq!(p.total_count, 50, "total ignores the cursor");
    let five: Vec<DataId> = ids.iter().step_by(5).copied().collect();
    let p = page(Order::Asc, Some("five_"), None, 0, 4);
    assert_eq!(idsof(&p), five[..4]);
    assert_eq!((p.total_count, p.has_more), (10, true));
    let p = page(Order::Desc, Some("five_"), Some(five[5]), 1, 100);
    assert_eq!(idsof(&p), [five[3], five[2], five[1], five[0]]);
    let p = page(Order::Asc, None, None, 0, 0);
    assert!(p.images.is_empty() && p.total_count == 50 && p.has_more);
}

/// Pages through 2,400 images with the keyset cursor while another thread adds images and
/// deletes entities: every image that existed throughout is returned exactly once, in order.
pub(super) fn keyset_paging_survives_concurrent_inserts_and_deletes(b: &dyn Backend) {
    let store = open(b);
    let db = DbRef::new("t", "default");
    store.create_db(db).unwrap();
    let entities: Vec<String> = (0..2_400).map(|i| format!("e{:03}", i % 300)).collect();
    let initial: Vec<DataId> = add_many(&*store, db, &entities);
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
                after,
                ..query(order, prefix, 100)
            };
            let page = store.list_images(db, &q).unwrap();
            seen.extend(page.images.iter().map(|r| r.data_id));
            pages += 1;
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
        assert_eq!(unique.len(), seen.len(), "{order:?}: a record came twice");
        assert!(
            seen.windows(2).all(|w| match order {
                Order::Asc => w[0] < w[1],
                Order::Desc => w[0] > w[1],
            }),
            "{order:?}: pages are not in order"
        );
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
        let missing = survivors.iter().filter(|id| !unique.contains(id)).count();
        assert_eq!(missing, 0, "{order:?}/{prefix:?}: skipped survivors");
        assert!(pages > 2, "{pages} pages, {churned} concurrent adds");
    }
    assert_eq!(
        store.get_db(db).unwrap().unwrap().image_count,
        list_all(&*store, db, Order::Asc, None).len() as u64,
        "the maintained count matches the rows"
    );
}

pub(super) fn get_images_keeps_the_given_order_and_skips_missing(b: &dyn Backend) {
    let store = open(b);
    let db = DbRef::new("t", "default");
    let other = DbRef::new("u", "default");
    store.create_db(db).unwrap();
    store.create_db(other).unwrap();
    let ids = add_many(&*store, db, &["a".into(), "b".into(), "c".into()]);
    let foreign = add_many(&*store, other, &["z".into()]);
    let missing = DataId::from_u64(1).unwrap();
    let got = store
        .get_images(db, &[ids[2], missing, ids[0], foreign[0]])
        .unwrap();
    let got: Vec<(DataId, &str)> = got
        .iter()
        .map(|r| (r.data_id, r.entity_id.as_str()))
        .collect();
    assert_eq!(got, [(ids[2], "c"), (ids[0], "a")]);
    assert!(store.get_images(db, &[]).unwrap().is_empty());
}

pub(super) fn thumbnail_round_trip_and_isolation(b: &dyn Backend) {
    let store = open(b);
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
                ..img("a", &v)
            },
        )
        .unwrap();
    let without = store.add_image(db, &img("b", &v)).unwrap();
    assert_eq!(
        store.get_thumbnail(db, with.data_id).unwrap(),
        Some(jpeg.clone())
    );
    assert_eq!(store.thumbnail_by_id(with.data_id).unwrap(), Some(jpeg));
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

pub(super) fn load_all_embeddings_round_trip(b: &dyn Backend) {
    let store = open(b);
    let db = DbRef::new("t", "default");
    store.create_db(db).unwrap();
    let dim = 1280;
    let vectors: Vec<Vec<f32>> = (0..300)
        .map(|i| {
            let mut v = emb(i, dim);
            v[0] = f32::MIN_POSITIVE * i as f32; // odd bit patterns survive too
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

pub(super) fn concurrent_adds_are_all_stored_once(b: &dyn Backend) {
    let store = open(b);
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
    let listed: Vec<DataId> = list_all(&*store, db, Order::Asc, None)
        .iter()
        .map(|r| r.data_id)
        .collect();
    assert_eq!(listed, ids);
    assert_eq!(store.get_db(db).unwrap().unwrap().image_count, 320);
}

pub(super) fn copy_descriptors_are_stored_beside_the_embedding_and_deleted_with_it(
    b: &dyn Backend,
) {
    let store = open(b);
    let db = DbRef::new("t", "both");
    assert_eq!(
        store.create_db(db).unwrap().descriptors,
        DbDescriptors::Both
    );
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
    store.delete_entity(db, "a").unwrap();
    assert!(store.list_ids(db, Descriptor::Copy).unwrap().is_empty());
    assert!(store
        .get_embeddings(db, Descriptor::Copy, &[with])
        .unwrap()
        .is_empty());
}

/// `first_image_of_entity`, and the copy-descriptor backfill: `ids_without_copy` pages,
/// `set_copy_embeddings` stores only for images of the database that lack one.
pub(super) fn first_image_of_entity_and_backfill_of_copy_descriptors(b: &dyn Backend) {
    let store = open(b);
    let db = DbRef::new("t", "default");
    let other = DbRef::new("u", "default");
    store.create_db(db).unwrap();
    store.create_db(other).unwrap();
    let v = emb(1, DIM);
    let ids = add_many(
        &*store,
        db,
        &["x".into(), "y".into(), "x".into(), "z".into()],
    );
    let foreign = add_many(&*store, other, &["x".into()])[0];
    assert_eq!(store.first_image_of_entity(db, "x").unwrap(), Some(ids[0]));
    assert_eq!(store.first_image_of_entity(db, "z").unwrap(), Some(ids[3]));
    assert_eq!(store.first_image_of_entity(db, "w").unwrap(), None);
    assert_eq!(
        store.first_image_of_entity(other, "x").unwrap(),
        Some(foreign)
    );
    assert!(matches!(
        store.first_image_of_entity(DbRef::new("t", "nope"), "x"),
        Err(StoreError::DbNotFound(_))
    ));
    let c1 = emb(5, COPY_DIM);
    store
        .add_image(
            db,
            &NewImage {
                copy_embedding: Some(&c1),
                ..img("w", &v)
            },
        )
        .unwrap();
    assert_eq!(store.ids_without_copy(db, None, 10).unwrap(), ids);
    assert_eq!(store.ids_without_copy(db, None, 2).unwrap(), ids[..2]);
    assert_eq!(
        store.ids_without_copy(db, Some(ids[1]), 10).unwrap(),
        ids[2..]
    );
    let c2 = emb(6, COPY_DIM);
    let stored = store
        .set_copy_embeddings(
            db,
            &[
                (ids[1], c2.clone()),
                (foreign, c2.clone()),
                (DataId::from_u64(1).unwrap(), c2.clone()),
            ],
        )
        .unwrap();
    assert_eq!(stored, vec![ids[1]], "only images of this database");
    // Never over one already there.
    assert!(store
        .set_copy_embeddings(db, &[(ids[1], c1.clone())])
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .get_embeddings(db, Descriptor::Copy, &[ids[1]])
            .unwrap()
            .vector(0)
            .unwrap(),
        &c2[..]
    );
    assert_eq!(
        store.ids_without_copy(db, None, 10).unwrap(),
        [ids[0], ids[2], ids[3]]
    );
    assert!(store.list_ids(other, Descriptor::Copy).unwrap().is_empty());
}

fn upload<'a>(tenant: &'a str, key: &'a str, bytes: &'a [u8], now: i64) -> NewUpload<'a> {
    NewUpload {
        tenant,
        key,
        bytes,
        now,
        expires_at: now + 100,
    }
}

pub(super) fn uploads_are_read_by_their_owner_until_they_expire(b: &dyn Backend) {
    let store = open(b);
    store
        .put_upload(&upload("a", "k1", b"one", 1000), 1 << 20)
        .unwrap();
    assert_eq!(
        store.get_upload("a", "k1", 1050).unwrap().as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(
        store.get_upload("b", "k1", 1050).unwrap(),
        None,
        "another tenant"
    );
    assert_eq!(
        store.get_upload("a", "k2", 1050).unwrap(),
        None,
        "unknown key"
    );
    assert_eq!(store.get_upload("a", "k1", 1100).unwrap(), None, "expired");
    assert!(matches!(
        store.put_upload(&upload("b", "k1", b"x", 1050), 1 << 20),
        Err(StoreError::Invalid(_))
    ));
    store
        .put_upload(&upload("a", "k1", b"two", 1050), 1 << 20)
        .unwrap();
    assert_eq!(
        store.get_upload("a", "k1", 1100).unwrap().as_deref(),
        Some(&b"two"[..])
    );
    drop(store);
    let store = open(b);
    assert_eq!(
        store.get_upload("a", "k1", 1100).unwrap().as_deref(),
        Some(&b"two"[..]),
        "survives reopening"
    );
}

pub(super) fn the_upload_byte_quota_counts_unexpired_uploads_of_the_owner_only(b: &dyn Backend) {
    let store = open(b);
    store
        .put_upload(&upload("a", "k1", &[0; 60], 1000), 100)
        .unwrap();
    store
        .put_upload(&upload("b", "k2", &[0; 60], 1000), 100)
        .unwrap();
    let e = store
        .put_upload(&upload("a", "k3", &[0; 60], 1000), 100)
        .unwrap_err();
    assert_eq!(
        e,
        StoreError::TenantUploadQuota {
            held: 60,
            limit: 100
        }
    );
    // Replacing one's own object does not count it twice.
    store
        .put_upload(&upload("a", "k1", &[0; 90], 1000), 100)
        .unwrap();
    // Once k1 expired (at 1100), its bytes no longer count.
    store
        .put_upload(&upload("a", "k3", &[0; 60], 1100), 100)
        .unwrap();
    // And it is gone for good: a later read at an earlier clock does not find it.
    assert_eq!(
        store.get_upload("a", "k1", 1000).unwrap(),
        None,
        "expired rows are dropped"
    );
    assert_eq!(
        store.get_upload("b", "k2", 1000).unwrap(),
        None,
        "every tenant's"
    );
}
