//! Vector, thumbnail and upload cases of the suite: embeddings round-trip bit-exact, copy
//! descriptors beside them and their backfill, thumbnails kept apart per tenant, uploads
//! with expiry and the per-tenant byte quota.

use super::cases::{add_many, emb, img, open, DIM};
use super::Backend;
use crate::embedding::{DbDescriptors, Descriptor, COPY_DIM};
use crate::store::{DataId, DbRef, EmbeddingSet, NewImage, NewUpload, StoreError};

fn upload<'a>(tenant: &'a str, key: &'a str, bytes: &'a [u8], now: i64) -> NewUpload<'a> {
    NewUpload {
        tenant,
        key,
        bytes,
        now,
        expires_at: now + 100,
    }
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
