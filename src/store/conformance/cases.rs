//! The cases of the suite on databases, adds, quotas and ids, and the helpers of every case
//! (paging is in `paging`, vectors, thumbnails and uploads in `vectors`, attributes in
//! `attributes`), each through the trait only.
//! Ported from the SQLite store's own tests, with table counts replaced by what the trait
//! shows (thumbnails, vectors and ids of deleted images are gone).

use std::sync::Arc;

use super::Backend;
use crate::embedding::Descriptor;
use crate::store::{
    Attributes, DataId, DbRef, ImageRecord, ImageStore, ListQuery, NewImage, Order, StoreError,
    StoreOptions,
};

pub(super) use super::attributes::{
    attributes_round_trip_and_filters_agree_with_memory,
    updates_set_only_what_is_given_and_the_table_reads_them,
};
pub(super) use super::duplicates::deleting_chosen_images_and_not_duplicate_marks;
pub(super) use super::paging::{
    entity_prefix_is_literal_for_underscore_and_percent,
    get_images_keeps_the_given_order_and_skips_missing,
    keyset_paging_survives_concurrent_inserts_and_deletes, order_offset_limit_and_total_count,
};
pub(super) use super::vectors::{
    copy_descriptors_are_stored_beside_the_embedding_and_deleted_with_it,
    first_image_of_entity_and_backfill_of_copy_descriptors, load_all_embeddings_round_trip,
    the_upload_byte_quota_counts_unexpired_uploads_of_the_owner_only,
    thumbnail_round_trip_and_isolation, uploads_are_read_by_their_owner_until_they_expire,
};

pub(super) const DIM: usize = 16;

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

pub(super) fn open(b: &dyn Backend) -> Arc<dyn ImageStore> {
    b.open(StoreOptions::default())
}

/// Adds the entities in batches of 500 (one transaction each); their ids in order.
pub(super) fn add_many(store: &dyn ImageStore, db: DbRef<'_>, entities: &[String]) -> Vec<DataId> {
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

pub(super) fn query(order: Order, prefix: Option<&str>, limit: u32) -> ListQuery<'_> {
    ListQuery {
        order,
        entity_id_prefix: prefix,
        after: None,
        filter: None,
        offset: 0,
        limit,
    }
}

pub(super) fn list_all(
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
