//! Tests of the operations: what SearchImage keeps of the ranked hits, and that a write
//! is never split between store and index — not by a client that disconnects mid-request
//! (the handler's future dropped), nor by a database deleted and re-created meanwhile.

use super::*;

fn id(n: u64) -> DataId {
    DataId::from_u64(n).unwrap()
}

fn hit(n: u64, cosine: f32) -> ScoredHit {
    ScoredHit {
        id: id(n),
        semantic: Some(cosine),
        copy: None,
        score: crate::rules::score(cosine),
    }
}

fn record(n: u64, entity: &str) -> ImageRecord {
    ImageRecord {
        data_id: id(n),
        entity_id: entity.into(),
        extra_data: String::new(),
        image_url: String::new(),
        created_at: 0,
        updated_at: 0,
        attributes: Attributes::NONE,
    }
}

fn request(limit: usize, min_score: Option<f32>, distinct_entity: bool) -> MatchFilter {
    MatchFilter {
        limit,
        min_score,
        distinct_entity,
    }
}

fn ids(matches: &[Match]) -> Vec<u64> {
    matches
        .iter()
        .map(|m| m.record.data_id.to_string().parse().unwrap())
        .collect()
}

#[test]
fn min_score_drops_weak_matches() {
    let hits = [hit(1, 0.95), hit(2, 0.81), hit(3, 0.79), hit(4, 0.2)];
    let records = || (1..=4).map(|n| record(n, &format!("e{n}"))).collect();
    assert_eq!(
        ids(&select_matches(&hits, records(), request(10, None, false))),
        vec![1, 2, 3, 4]
    );
    let m = select_matches(&hits, records(), request(10, Some(8.0), false));
    assert_eq!(ids(&m), vec![1, 2]);
    assert!(m.iter().all(|m| m.score >= 8.0));
    // 0 keeps everything, 10 only exact copies.
    assert_eq!(
        select_matches(&hits, records(), request(10, Some(0.0), false)).len(),
        4
    );
    assert!(select_matches(&hits, records(), request(10, Some(10.0), false)).is_empty());
}

#[test]
fn distinct_entity_keeps_the_best_of_each() {
    let hits = [
        hit(1, 0.9),
        hit(2, 0.85),
        hit(3, 0.8),
        hit(4, 0.7),
        hit(5, 0.6),
    ];
    let records = || {
        vec![
            record(1, "a"),
            record(2, "a"),
            record(3, "b"),
            record(4, "a"),
            record(5, "c"),
        ]
    };
    assert_eq!(
        ids(&select_matches(&hits, records(), request(10, None, true))),
        vec![1, 3, 5]
    );
    // Limit counts distinct entities.
    assert_eq!(
        ids(&select_matches(&hits, records(), request(2, None, true))),
        vec![1, 3]
    );
    // Without it, the limit counts images.
    assert_eq!(
        ids(&select_matches(&hits, records(), request(2, None, false))),
        vec![1, 2]
    );
    // Both filters together.
    assert_eq!(
        ids(&select_matches(
            &hits,
            records(),
            request(10, Some(7.5), true)
        )),
        vec![1, 3]
    );
}

#[test]
fn records_deleted_meanwhile_are_skipped() {
    let hits = [hit(1, 0.9), hit(2, 0.8)];
    let m = select_matches(&hits, vec![record(2, "b")], request(10, None, false));
    assert_eq!(ids(&m), vec![2]);
}

// ---- Writes are never split between store and index ------------------------------------

mod write_safety {
    use std::collections::HashMap;
    use std::path::Path;
    use std::sync::mpsc;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use super::super::*;
    use crate::fetch::FetchConfig;
    use crate::store::{EmbeddingSet, ImagePage, SqliteStore};
    use crate::vision::copy_model::CopyModel;
    use crate::vision::decode::tests::samples;
    use crate::vision::embedder::{BatcherConfig, Networks};
    use crate::vision::model::{locate_copy_model, EfficientNet, ModelFiles, ModelOptions};

    /// A point where a store operation stops until the test lets it go: `entered` tells
    /// the test the operation is running (inside the blocking task), `release` resumes it.
    struct Pause {
        entered: mpsc::Sender<()>,
        release: mpsc::Receiver<()>,
    }

    /// The real SQLite store with one-shot pause points, so a test can cancel a request
    /// or race another one at the exact moment its write is in progress.
    struct PausingStore {
        inner: SqliteStore,
        pauses: Mutex<HashMap<&'static str, Pause>>,
    }

    impl PausingStore {
        /// Arms a pause for the next call of `op`; returns (entered, release).
        fn arm(&self, op: &'static str) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
            let (entered_tx, entered_rx) = mpsc::channel();
            let (release_tx, release_rx) = mpsc::channel();
            let pause = Pause {
                entered: entered_tx,
                release: release_rx,
            };
            self.pauses.lock().unwrap().insert(op, pause);
            (entered_rx, release_tx)
        }

        fn pause_point(&self, op: &'static str) {
            let pause = self.pauses.lock().unwrap().remove(op);
            if let Some(p) = pause {
                p.entered.send(()).unwrap();
                p.release.recv_timeout(Duration::from_secs(30)).unwrap();
            }
        }
    }

    impl ImageStore for PausingStore {
        fn create_db_with(
            &self,
            db: DbRef<'_>,
            descriptors: DbDescriptors,
        ) -> Result<DbInfo, StoreError> {
            self.pause_point("create_db");
            self.inner.create_db_with(db, descriptors)
        }
        fn get_db(&self, db: DbRef<'_>) -> Result<Option<DbInfo>, StoreError> {
            self.inner.get_db(db)
        }
        fn list_dbs(&self, tenant: &str) -> Result<Vec<DbInfo>, StoreError> {
            self.inner.list_dbs(tenant)
        }
        fn list_all_dbs(&self) -> Result<Vec<DbInfo>, StoreError> {
            self.inner.list_all_dbs()
        }
        fn delete_db(&self, db: DbRef<'_>) -> Result<(), StoreError> {
            self.pause_point("delete_db");
            self.inner.delete_db(db)
        }
        fn add_images(
            &self,
            db: DbRef<'_>,
            images: &[NewImage<'_>],
        ) -> Result<Vec<ImageRecord>, StoreError> {
            self.pause_point("add_images");
            self.inner.add_images(db, images)
        }
        fn delete_images(&self, db: DbRef<'_>, ids: &[DataId]) -> Result<Vec<DataId>, StoreError> {
            self.inner.delete_images(db, ids)
        }
        fn mark_not_duplicate(
            &self,
            db: DbRef<'_>,
            a: DataId,
            b: DataId,
            now: i64,
        ) -> Result<bool, StoreError> {
            self.inner.mark_not_duplicate(db, a, b, now)
        }
        fn not_duplicate_pairs(&self, db: DbRef<'_>) -> Result<Vec<(DataId, DataId)>, StoreError> {
            self.inner.not_duplicate_pairs(db)
        }
        fn delete_entity(&self, db: DbRef<'_>, entity_id: &str) -> Result<Vec<DataId>, StoreError> {
            self.pause_point("delete_entity");
            self.inner.delete_entity(db, entity_id)
        }
        fn list_images(
            &self,
            db: DbRef<'_>,
            query: &ListQuery<'_>,
        ) -> Result<ImagePage, StoreError> {
            self.inner.list_images(db, query)
        }
        fn get_images(
            &self,
            db: DbRef<'_>,
            ids: &[DataId],
        ) -> Result<Vec<ImageRecord>, StoreError> {
            self.inner.get_images(db, ids)
        }
        fn get_thumbnail(&self, db: DbRef<'_>, id: DataId) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get_thumbnail(db, id)
        }
        fn put_upload(
            &self,
            upload: &crate::store::NewUpload<'_>,
            tenant_max_bytes: u64,
        ) -> Result<(), StoreError> {
            self.inner.put_upload(upload, tenant_max_bytes)
        }
        fn get_upload(
            &self,
            tenant: &str,
            key: &str,
            now: i64,
        ) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get_upload(tenant, key, now)
        }
        fn thumbnail_by_id(&self, id: DataId) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.thumbnail_by_id(id)
        }
        fn update_images(
            &self,
            db: DbRef<'_>,
            which: crate::store::ImageSelector<'_>,
            update: &crate::store::ImageUpdate<'_>,
        ) -> Result<Vec<ImageRecord>, StoreError> {
            self.inner.update_images(db, which, update)
        }
        fn for_each_attributes(
            &self,
            db: DbRef<'_>,
            visit: &mut dyn FnMut(DataId, Attributes),
        ) -> Result<u64, StoreError> {
            self.inner.for_each_attributes(db, visit)
        }
        fn first_image_of_entity(
            &self,
            db: DbRef<'_>,
            entity_id: &str,
        ) -> Result<Option<DataId>, StoreError> {
            self.inner.first_image_of_entity(db, entity_id)
        }
        fn for_each_embedding(
            &self,
            db: DbRef<'_>,
            kind: Descriptor,
            visit: &mut dyn FnMut(DataId, &[f32]),
        ) -> Result<u64, StoreError> {
            self.inner.for_each_embedding(db, kind, visit)
        }
        fn list_ids(&self, db: DbRef<'_>, kind: Descriptor) -> Result<Vec<DataId>, StoreError> {
            self.inner.list_ids(db, kind)
        }
        fn get_embeddings(
            &self,
            db: DbRef<'_>,
            kind: Descriptor,
            ids: &[DataId],
        ) -> Result<EmbeddingSet, StoreError> {
            self.inner.get_embeddings(db, kind, ids)
        }
        fn set_copy_embeddings(
            &self,
            db: DbRef<'_>,
            vectors: &[(DataId, Vec<f32>)],
        ) -> Result<Vec<DataId>, StoreError> {
            self.inner.set_copy_embeddings(db, vectors)
        }
        fn ids_without_copy(
            &self,
            db: DbRef<'_>,
            after: Option<DataId>,
            limit: usize,
        ) -> Result<Vec<DataId>, StoreError> {
            self.inner.ids_without_copy(db, after, limit)
        }
    }

    /// The service over a pausing store in `dir`, with the real models.
    fn service(dir: &Path) -> (Arc<ImageService>, Arc<PausingStore>) {
        service_with(dir, true)
    }

    /// [`service`], with or without the copy-detection model.
    fn service_with(dir: &Path, with_copy: bool) -> (Arc<ImageService>, Arc<PausingStore>) {
        let store = Arc::new(PausingStore {
            inner: SqliteStore::open(dir).unwrap(),
            pauses: Mutex::new(HashMap::new()),
        });
        let files = ModelFiles::locate(None, None).expect("model files (run scripts/setup.sh)");
        let copy_path = locate_copy_model(None).expect("copy model (run scripts/setup.sh)");
        let nets = Networks {
            semantic: EfficientNet::load(&files, ModelOptions::default()).unwrap(),
            copy: with_copy.then(|| {
                CopyModel::load(&files.onnxruntime, &copy_path, ModelOptions::default()).unwrap()
            }),
        };
        let embedder = Arc::new(EmbeddingBatcher::start(nets, BatcherConfig::default()));
        let service = ImageService::start(
            store.clone(),
            ImageFetcher::new(FetchConfig::default()).unwrap(),
            embedder,
            ListTokenKey::generate().unwrap(),
            IndexSettings::in_data_dir(dir),
        )
        .unwrap();
        (Arc::new(service), store)
    }

    /// A sample photo inside the API's size rules.
    fn photo() -> Vec<u8> {
        samples()
            .into_iter()
            .map(|(_, bytes)| bytes)
            .find(|b| {
                crate::vision::decode::probe(b).is_ok_and(|(_, w, h)| crate::rules::sides_ok(w, h))
            })
            .unwrap()
    }

    fn add_request(db: &str, entity: &str, bytes: Vec<u8>) -> AddImage {
        AddImage {
            db: db.into(),
            entity_id: entity.into(),
            extra_data: String::new(),
            source: ImageSource::Bytes(bytes),
            attributes: Attributes::NONE,
            part: Part::Whole,
        }
    }

    /// Waits (off the async threads) until the armed operation is running.
    async fn wait_entered(entered: mpsc::Receiver<()>) {
        tokio::task::spawn_blocking(move || entered.recv_timeout(Duration::from_secs(60)))
            .await
            .unwrap()
            .expect("the store operation was never reached");
    }

    /// Polls `done` for up to 10 s: the cancelled request's blocking task finishes on its own.
    async fn eventually(mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Images of `db` in the store and in the index (`None`: the index does not know it).
    fn counts(svc: &ImageService, store: &PausingStore, db: &str) -> (Option<u64>, Option<usize>) {
        let stored = store
            .get_db(DbRef::new("t", db))
            .unwrap()
            .map(|i| i.image_count);
        let indexed = svc
            .database_sizes()
            .into_iter()
            .find(|(t, d, _)| t == "t" && d == db)
            .map(|(_, _, n)| n);
        (stored, indexed)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_create_db_cancelled_mid_write_is_in_store_and_index() {
        let dir = tempfile::tempdir().unwrap();
        let (svc, store) = service(dir.path());
        let (entered, release) = store.arm("create_db");
        let request = tokio::spawn({
            let svc = svc.clone();
            async move { svc.create_db("t", "db", DbDescriptors::Both).await }
        });
        wait_entered(entered).await;
        request.abort(); // the client went away: hyper drops the handler's future
        assert!(request.await.unwrap_err().is_cancelled());
        release.send(()).unwrap();
        eventually(|| counts(&svc, &store, "db") == (Some(0), Some(0))).await;
        assert_eq!(counts(&svc, &store, "db"), (Some(0), Some(0)));
        // And it is usable: an add goes through and is found.
        let bytes = photo();
        svc.add_image("t", add_request("db", "e1", bytes.clone()))
            .await
            .unwrap();
        assert_eq!(counts(&svc, &store, "db"), (Some(1), Some(1)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_add_cancelled_mid_write_is_searchable() {
        let dir = tempfile::tempdir().unwrap();
        let (svc, store) = service(dir.path());
        svc.create_db("t", "db", DbDescriptors::Both).await.unwrap();
        let bytes = photo();
        let (entered, release) = store.arm("add_images");
        let request = tokio::spawn({
            let (svc, bytes) = (svc.clone(), bytes.clone());
            async move { svc.add_image("t", add_request("db", "e1", bytes)).await }
        });
        wait_entered(entered).await;
        request.abort();
        assert!(request.await.unwrap_err().is_cancelled());
        release.send(()).unwrap();
        eventually(|| counts(&svc, &store, "db") == (Some(1), Some(1))).await;
        assert_eq!(counts(&svc, &store, "db"), (Some(1), Some(1)));
        let (found, _) = svc
            .search_image(
                "t",
                SearchImage {
                    db: "db".into(),
                    query: SearchQuery::Image(ImageSource::Bytes(bytes)),
                    limit: 5,
                    min_score: None,
                    distinct_entity: false,
                    filter: None,
                    part: Part::Whole,
                },
            )
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].record.entity_id, "e1");
        assert_eq!(found[0].score, crate::rules::SCORE_MAX);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crop_without_the_subject_model_is_refused_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (svc, store) = service(dir.path());
        svc.create_db("t", "db", DbDescriptors::Both).await.unwrap();
        assert!(!svc.has_subject_model());
        let e = svc
            .add_image(
                "t",
                AddImage {
                    part: Part::Subject,
                    ..add_request("db", "e1", photo())
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(e, ServiceError::SubjectModelMissing), "{e}");
        assert!(e.to_string().contains("scripts/setup.sh"), "{e}");
        assert_eq!(counts(&svc, &store, "db"), (Some(0), Some(0)));
        let e = svc
            .search_image(
                "t",
                SearchImage {
                    db: "db".into(),
                    query: SearchQuery::Image(ImageSource::Bytes(photo())),
                    limit: 5,
                    min_score: None,
                    distinct_entity: false,
                    filter: None,
                    part: Part::Subject,
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(e, ServiceError::SubjectModelMissing), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delete_entity_cancelled_mid_write_leaves_the_index_in_step() {
        let dir = tempfile::tempdir().unwrap();
        let (svc, store) = service(dir.path());
        svc.create_db("t", "db", DbDescriptors::Both).await.unwrap();
        svc.add_image("t", add_request("db", "e1", photo()))
            .await
            .unwrap();
        let (entered, release) = store.arm("delete_entity");
        let request = tokio::spawn({
            let svc = svc.clone();
            async move { svc.delete_entity("t", "db", "e1").await }
        });
        wait_entered(entered).await;
        request.abort();
        assert!(request.await.unwrap_err().is_cancelled());
        release.send(()).unwrap();
        eventually(|| counts(&svc, &store, "db") == (Some(0), Some(0))).await;
        assert_eq!(counts(&svc, &store, "db"), (Some(0), Some(0)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_add_racing_delete_and_recreate_does_not_split_the_new_database() {
        let dir = tempfile::tempdir().unwrap();
        let (svc, store) = service(dir.path());
        svc.create_db("t", "db", DbDescriptors::Both).await.unwrap();
        let (entered, release) = store.arm("add_images");
        let add = tokio::spawn({
            let svc = svc.clone();
            async move { svc.add_image("t", add_request("db", "e1", photo())).await }
        });
        wait_entered(entered).await;
        // DeleteImageDb + CreateImageDb of the same name while the add is in its write.
        let recreate = tokio::spawn({
            let svc = svc.clone();
            async move {
                svc.delete_db("t", "db").await?;
                svc.create_db("t", "db", DbDescriptors::Both).await
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        release.send(()).unwrap();
        let added = add.await.unwrap();
        recreate.await.unwrap().unwrap();
        // Whatever the add answered, the database now named "db" agrees with its index.
        let (stored, indexed) = counts(&svc, &store, "db");
        assert_eq!(
            stored.map(|n| n as usize),
            indexed,
            "add answered {added:?}"
        );
        assert_eq!(stored, Some(0), "the add happened before the delete");
    }

    /// Images stored by a server without copy descriptors (an older release, or one run
    /// with --no-copy-model) get them from their thumbnails at the next start with the
    /// model: afterwards an edited copy is "the same picture" (Score ≥ 8).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn images_stored_without_copy_descriptors_get_them_from_their_thumbnails() {
        let dir = tempfile::tempdir().unwrap();
        let photos: Vec<Vec<u8>> = samples()
            .into_iter()
            .map(|(_, b)| b)
            .filter(|b| {
                crate::vision::decode::probe(b).is_ok_and(|(_, w, h)| crate::rules::sides_ok(w, h))
            })
            .take(6)
            .collect();
        let db = DbRef::new("t", "old");
        {
            let (svc, store) = service_with(dir.path(), false);
            svc.create_db("t", "old", DbDescriptors::Both)
                .await
                .unwrap();
            for (i, p) in photos.iter().enumerate() {
                svc.add_image("t", add_request("old", &format!("e{i}"), p.clone()))
                    .await
                    .unwrap();
            }
            assert_eq!(
                store.ids_without_copy(db, None, 100).unwrap().len(),
                photos.len()
            );
            assert!(!svc.backfill_running());
            tokio::task::spawn_blocking(move || svc.snapshot_indexes())
                .await
                .unwrap();
        }
        let (svc, store) = service(dir.path());
        eventually(|| !svc.backfill_running()).await;
        assert!(store.ids_without_copy(db, None, 100).unwrap().is_empty());
        // A crop of 70% of the area of the third photo, as a JPEG.
        let img = crate::vision::decode::decode(&photos[2], &Default::default()).unwrap();
        let (w, h) = (img.width * 84 / 100, img.height * 84 / 100);
        let cropped = image::imageops::crop_imm(
            &image::RgbImage::from_raw(img.width, img.height, img.pixels.clone()).unwrap(),
            img.width - w,
            0,
            w,
            h,
        )
        .to_image();
        let mut jpeg = std::io::Cursor::new(Vec::new());
        cropped
            .write_to(&mut jpeg, image::ImageFormat::Jpeg)
            .unwrap();
        let (matches, _) = svc
            .search_image(
                "t",
                SearchImage {
                    db: "old".into(),
                    query: SearchQuery::Image(ImageSource::Bytes(jpeg.into_inner())),
                    limit: 3,
                    min_score: None,
                    distinct_entity: false,
                    filter: None,
                    part: Part::Whole,
                },
            )
            .await
            .unwrap();
        assert_eq!(matches[0].record.entity_id, "e2", "{matches:?}");
        assert!(
            matches[0].score >= crate::rules::SAME_PICTURE_SCORE,
            "{matches:?}"
        );
        assert!(
            matches[1].score < crate::rules::SAME_PICTURE_SCORE,
            "{matches:?}"
        );
    }
}
