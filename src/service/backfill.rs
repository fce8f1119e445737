//! The migration of images stored before copy descriptors existed: in the background after
//! start-up, each such image of a database that indexes copies gets its descriptor
//! computed from its stored 256-px thumbnail (`prepare::copy_input_from_thumbnail`),
//! stored, and added to the database's copy index. `bench copies` measured what that costs
//! against descriptors of the full images (README, "Copy detection").
//!
//! Batches of `BATCH` images: the network runs outside the database's gate; storing and
//! indexing a batch hold it exclusively for a moment, so that no delete slips between the
//! two. Images the network cannot read (no thumbnail, a damaged one) are skipped and stay
//! semantic-only. Stops between batches when asked (shutdown).
//!
//! Not here: the descriptors of new images (`images::add_image`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use super::db_index::DbIndex;
use super::prepare::copy_input_from_thumbnail;
use super::registry::DbIndexes;
use crate::embedding::Descriptor;
use crate::store::{DataId, DbRef, ImageStore};
use crate::vision::embedder::{EmbedInput, EmbeddingBatcher};

/// Images per batch.
const BATCH: usize = 32;

/// Starts the backfill thread; `None` when the copy model is not loaded.
pub(super) fn start(
    store: Arc<dyn ImageStore>,
    indexes: Arc<DbIndexes>,
    embedder: Arc<EmbeddingBatcher>,
    stop: Arc<AtomicBool>,
) -> Option<JoinHandle<()>> {
    if !embedder.has_copy_model() {
        return None;
    }
    std::thread::Builder::new()
        .name("copy-backfill".into())
        .spawn(move || {
            for index in indexes.all() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                if index.indexes(Descriptor::Copy) {
                    backfill_db(store.as_ref(), &indexes, &index, &embedder, &stop);
                }
            }
        })
        .ok()
}

fn backfill_db(
    store: &dyn ImageStore,
    indexes: &DbIndexes,
    index: &Arc<DbIndex>,
    embedder: &EmbeddingBatcher,
    stop: &AtomicBool,
) {
    let db = DbRef::new(&index.tenant, &index.name);
    let started = Instant::now();
    let (mut after, mut done, mut skipped) = (None, 0usize, 0usize);
    while !stop.load(Ordering::Relaxed) && indexes.is_current(index) {
        let ids = match store.ids_without_copy(db, after, BATCH) {
            Ok(ids) if !ids.is_empty() => ids,
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(db = %index.name, error = %e, "copy backfill stopped");
                return;
            }
        };
        after = ids.last().copied();
        let (vectors, failed) = descriptors(store, db, &ids, embedder);
        skipped += failed;
        let _gate = index.blocking_exclusive_gate();
        if !indexes.is_current(index) {
            return;
        }
        let stored = match store.set_copy_embeddings(db, &vectors) {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(db = %index.name, error = %e, "copy backfill stopped");
                return;
            }
        };
        let added: Vec<(DataId, &[f32])> = vectors
            .iter()
            .filter(|(id, _)| stored.contains(id))
            .map(|(id, v)| (*id, v.as_slice()))
            .collect();
        if let Err(e) = index.add_copies(&added) {
            tracing::warn!(db = %index.name, error = %e, "copy backfill stopped");
            return;
        }
        done += added.len();
    }
    if done + skipped > 0 {
        tracing::info!(db = %index.name, images = done, skipped, secs = started.elapsed().as_secs_f64(), "copy descriptors computed from thumbnails");
    }
}

/// The copy descriptors of `ids` from their thumbnails; (descriptors, images skipped).
fn descriptors(
    store: &dyn ImageStore,
    db: DbRef<'_>,
    ids: &[DataId],
    embedder: &EmbeddingBatcher,
) -> (Vec<(DataId, Vec<f32>)>, usize) {
    let mut tickets = Vec::with_capacity(ids.len());
    let mut skipped = 0;
    for &id in ids {
        let input = match store.get_thumbnail(db, id) {
            Ok(Some(jpeg)) => copy_input_from_thumbnail(&jpeg).ok(),
            _ => None,
        };
        let ticket = input.and_then(|copy| {
            embedder
                .submit_wait(EmbedInput {
                    tensor: Vec::new(),
                    copy: Some(copy),
                })
                .ok()
        });
        match ticket {
            Some(t) => tickets.push((id, t)),
            None => skipped += 1,
        }
    }
    let mut out = Vec::with_capacity(tickets.len());
    for (id, ticket) in tickets {
        match ticket.wait().ok().and_then(|i| i.copy) {
            Some(v) => out.push((id, v)),
            None => skipped += 1,
        }
    }
    (out, skipped)
}
