//! Duplicate review: the groups of copies in one database, found on the server from each
//! image's stored descriptors, for the console's Duplicates view (`ListDuplicates`), and
//! the "not a duplicate" marks a person leaves there (`MarkNotDuplicate`).
//!
//! Two images are linked when either finds the other at `min_score` or above among its
//! `neighbours` best (the same search as SearchImage by DataId); a group is a connected set
//! of links (an edited copy of an edited copy joins its original), minus the links a person
//! marked. Searching is incremental and bounded in time per call: a database's links are
//! kept in memory, and each call searches only images not searched yet (new ones) within
//! its time budget and drops links to deleted images, so a review of 100k images is many
//! short calls (the console polls, showing progress) and "delete the rest" costs nothing.
//!
//! Not here: the CLI's `imgsearch dedup` (through the API, `remote::dedup`); both group with
//! `index::connected`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::ImageService;
use crate::index::connected::connected_sets;
use crate::service::db_index::{DbIndex, QueryVectors};
use crate::service::ServiceError;
use crate::store::{DataId, DbRef, Descriptor, ImageRecord, ImageStore};

/// Images searched per step between deadline checks (split across threads).
const STEP: usize = 128;

/// One image of a group, with its Score to the group's first image when they are linked
/// directly (`None` for the first itself and for members linked only through others).
#[derive(Debug, Clone)]
pub struct DuplicateMember {
    pub record: ImageRecord,
    pub score_to_first: Option<f32>,
}

/// A page of groups and how far the review got.
#[derive(Debug, Clone)]
pub struct DuplicateReview {
    /// Groups, oldest image first in each, ordered by their first image.
    pub groups: Vec<Vec<DuplicateMember>>,
    /// Every group found so far (the page is `groups`).
    pub total_groups: usize,
    /// Images searched so far, of `total_images`; the review is complete when they match.
    pub searched: usize,
    pub total_images: usize,
}

/// What a review asks.
#[derive(Debug, Clone, Copy)]
pub struct ReviewRequest {
    pub min_score: f32,
    pub neighbours: usize,
    /// Longest time this call spends searching before answering with what it has.
    pub budget: Duration,
    pub start: usize,
    pub limit: usize,
}

/// Links found so far per database, kept between calls.
#[derive(Default)]
pub(crate) struct DuplicateReviews {
    by_db: Mutex<HashMap<(String, String), SharedState>>,
}

type SharedState = Arc<Mutex<ReviewState>>;
/// (searched image, image it found, Score) from one thread's share of a step.
type FoundLinks = Result<Vec<(DataId, DataId, f32)>, ServiceError>;

#[derive(Default)]
struct ReviewState {
    min_score: f32,
    neighbours: usize,
    searched: HashSet<DataId>,
    /// (smaller id, larger id) → best Score either found the other at.
    links: HashMap<(DataId, DataId), f32>,
}

impl DuplicateReviews {
    fn state(&self, tenant: &str, db: &str) -> SharedState {
        let mut map = self.by_db.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry((tenant.to_string(), db.to_string()))
            .or_default()
            .clone()
    }
}

impl ImageService {
    /// Searches what is not searched yet (within `req.budget`) and answers a page of the
    /// groups found so far.
    pub async fn review_duplicates(
        &self,
        tenant: &str,
        db: &str,
        req: ReviewRequest,
    ) -> Result<DuplicateReview, ServiceError> {
        let index = self.index(tenant, db)?;
        let state = self.reviews.state(tenant, db);
        let store = self.store.clone();
        let rerank = self.indexes.settings().rerank;
        let (t, d) = (tenant.to_string(), db.to_string());
        tokio::task::spawn_blocking(move || {
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            review(
                store.as_ref(),
                &index,
                DbRef::new(&t, &d),
                &mut state,
                rerank,
                req,
            )
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?
    }

    /// Marks `a` and `b` "not a duplicate": review no longer links them.
    pub async fn mark_not_duplicate(
        &self,
        tenant: &str,
        db: &str,
        a: DataId,
        b: DataId,
    ) -> Result<(), ServiceError> {
        if a == b {
            return Err(ServiceError::InvalidParameter(
                "DataId and OtherDataId must name two different images".into(),
            ));
        }
        self.index(tenant, db)?;
        let (t, d) = (tenant.to_string(), db.to_string());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let marked = self
            .blocking_store(move |s| s.mark_not_duplicate(DbRef::new(&t, &d), a, b, now))
            .await?;
        if marked {
            Ok(())
        } else {
            Err(ServiceError::ImageNotFound(format!(
                "DataId {a} and {b} must both be images of database \"{db}\"; list them with \
                 ListImages"
            )))
        }
    }

    /// Deletes the images of `db` among `ids`; how many were deleted.
    pub async fn delete_images(
        &self,
        tenant: &str,
        db: &str,
        ids: Vec<DataId>,
    ) -> Result<usize, ServiceError> {
        let (index, gate) = self.gated_index(tenant, db).await?;
        let (t, d) = (tenant.to_string(), db.to_string());
        self.write_through(move |store, _| {
            let _gate = gate;
            let removed = store.delete_images(DbRef::new(&t, &d), &ids)?;
            index.remove(&removed)?;
            Ok(removed.len())
        })
        .await
    }
}

fn review(
    store: &dyn ImageStore,
    index: &DbIndex,
    db: DbRef<'_>,
    state: &mut ReviewState,
    rerank: usize,
    req: ReviewRequest,
) -> Result<DuplicateReview, ServiceError> {
    let deadline = Instant::now() + req.budget;
    if state.min_score != req.min_score || state.neighbours != req.neighbours {
        *state = ReviewState {
            min_score: req.min_score,
            neighbours: req.neighbours,
            ..ReviewState::default()
        };
    }
    let ids = store.list_ids(db, Descriptor::Semantic)?;
    let present: HashSet<DataId> = ids.iter().copied().collect();
    state.searched.retain(|id| present.contains(id));
    state
        .links
        .retain(|(a, b), _| present.contains(a) && present.contains(b));
    let todo: Vec<DataId> = ids
        .iter()
        .copied()
        .filter(|id| !state.searched.contains(id))
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for step in todo.chunks(STEP) {
        if Instant::now() >= deadline {
            break;
        }
        let semantic = store.get_embeddings(db, Descriptor::Semantic, step)?;
        let copy = store.get_embeddings(db, Descriptor::Copy, step)?;
        let copy: HashMap<DataId, &[f32]> = copy.iter().collect();
        let queries: Vec<(DataId, QueryVectors)> = semantic
            .iter()
            .map(|(id, v)| {
                let q = QueryVectors {
                    semantic: vec![v.to_vec()],
                    copy: copy.get(&id).map(|c| c.to_vec()),
                };
                (id, q)
            })
            .collect();
        let per_thread = queries.len().div_ceil(threads).max(1);
        let found: Vec<FoundLinks> = std::thread::scope(|scope| {
            let handles: Vec<_> = queries
                .chunks(per_thread)
                .map(|part| {
                    scope.spawn(move || -> Result<_, ServiceError> {
                        let mut links = Vec::new();
                        for (id, q) in part {
                            let (hits, _) = index.search(store, q, req.neighbours, rerank, None)?;
                            links.extend(
                                hits.iter()
                                    .filter(|h| h.id != *id && h.score >= req.min_score)
                                    .map(|h| (*id, h.id, h.score)),
                            );
                        }
                        Ok(links)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(ServiceError::Internal("a review search panicked".into()))
                    })
                })
                .collect()
        });
        for part in found {
            for (a, b, score) in part? {
                if !present.contains(&b) {
                    continue;
                }
                let key = if a < b { (a, b) } else { (b, a) };
                let best = state.links.entry(key).or_insert(score);
                *best = best.max(score);
            }
        }
        state.searched.extend(step.iter().copied());
    }

    let marked: HashSet<(DataId, DataId)> = store.not_duplicate_pairs(db)?.into_iter().collect();
    let position: HashMap<DataId, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let edges = state
        .links
        .keys()
        .filter(|pair| !marked.contains(pair))
        .filter_map(|(a, b)| Some((*position.get(a)?, *position.get(b)?)));
    let sets = connected_sets(ids.len(), edges);
    let total_groups = sets.len();
    let page: Vec<Vec<DataId>> = sets
        .into_iter()
        .skip(req.start)
        .take(req.limit)
        .map(|set| set.into_iter().map(|i| ids[i]).collect())
        .collect();
    let wanted: Vec<DataId> = page.iter().flatten().copied().collect();
    let records: HashMap<DataId, ImageRecord> = store
        .get_images(db, &wanted)?
        .into_iter()
        .map(|r| (r.data_id, r))
        .collect();
    let groups = page
        .into_iter()
        .map(|members| {
            let first = members[0];
            members
                .into_iter()
                .filter_map(|id| {
                    let key = if first < id { (first, id) } else { (id, first) };
                    Some(DuplicateMember {
                        record: records.get(&id)?.clone(),
                        score_to_first: (id != first)
                            .then(|| state.links.get(&key).copied())
                            .flatten(),
                    })
                })
                .collect::<Vec<_>>()
        })
        .filter(|g| g.len() > 1)
        .collect();
    Ok(DuplicateReview {
        groups,
        total_groups,
        searched: state.searched.len(),
        total_images: ids.len(),
    })
}
