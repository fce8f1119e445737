//! Tests only the SQLite store needs: its tables after deletes, the file-level properties
//! (pragmas, migrations, corruption, crash durability), group commit and DataId generation.
//! The behaviour through the `ImageStore` trait is `store::conformance`, run on SQLite too.

use super::committer::{commit_group, OwnedImage};
use super::rows::{prefix_successor, sql_id};
use super::schema::MIGRATIONS;
use super::*;
use crate::embedding::{DbDescriptors, Descriptor, COPY_DIM};
use crate::store::{DbRef, ImageRecord, ImageStore, ListQuery, NewImage, Order};
use rusqlite::params;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
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
