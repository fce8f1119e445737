//! Many files through the network fast: `decode_threads` workers read, decode and
//! preprocess files while the `EmbeddingBatcher` runs inference, so decoding overlaps
//! inference. Results come back in input order. Used by `embed`, `classify`, the
//! benchmarks and bulk tools; the server feeds the batcher per request instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::copy_model::copy_input;
use super::decode::{self, DecodeLimits};
use super::embedder::{EmbedInput, EmbeddingBatcher, Inference, Ticket};
use super::preprocess::{image_to_tensor, write_input_tensor, INPUT_LEN};

/// Why one file produced no result (the others still do).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read: {0}")]
    Read(#[from] std::io::Error),
    #[error("{0}")]
    Decode(#[from] super::decode::DecodeError),
    #[error("{0}")]
    Embed(#[from] super::embedder::EmbedError),
    #[error("{0}")]
    Model(#[from] super::model::ModelError),
}

/// Runs every file through decode → preprocess → batcher and calls `on_result` with each
/// result in the order of `files`.
pub fn run_files<F>(
    files: &[PathBuf],
    batcher: &EmbeddingBatcher,
    decode_threads: usize,
    limits: &DecodeLimits,
    on_result: F,
) where
    F: FnMut(usize, &Path, Result<Inference, FileError>),
{
    run_files_with(files, batcher, decode_threads, limits, false, on_result)
}

/// [`run_files`], with the copy-detection descriptor too when `copy` (from the same decode).
pub fn run_files_with<F>(
    files: &[PathBuf],
    batcher: &EmbeddingBatcher,
    decode_threads: usize,
    limits: &DecodeLimits,
    copy: bool,
    mut on_result: F,
) where
    F: FnMut(usize, &Path, Result<Inference, FileError>),
{
    let next = AtomicUsize::new(0);
    let workers = decode_threads.clamp(1, files.len().max(1));
    // Bounded so decoders stay only a little ahead of inference (each tensor is 600 KB).
    let (tx, rx) = crossbeam_channel::bounded::<(usize, Result<Ticket, FileError>)>(workers * 4);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = files.get(i) else { break };
                let ticket = prepare(path, limits, copy).and_then(|t| Ok(batcher.submit_wait(t)?));
                if tx.send((i, ticket)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        // Re-order: results may arrive out of order; emit strictly by index.
        let mut pending: BTreeMap<usize, Result<Ticket, FileError>> = BTreeMap::new();
        let mut emit = 0;
        for (i, ticket) in rx.iter() {
            pending.insert(i, ticket);
            while let Some(ticket) = pending.remove(&emit) {
                let result = ticket.and_then(|t| Ok(t.wait()?));
                on_result(emit, &files[emit], result);
                emit += 1;
            }
        }
    });
}

fn prepare(path: &Path, limits: &DecodeLimits, copy: bool) -> Result<EmbedInput, FileError> {
    let bytes = std::fs::read(path)?;
    let mut tensor = vec![0f32; INPUT_LEN];
    if !copy {
        image_to_tensor(&bytes, limits, &mut tensor)?;
        return Ok(tensor.into());
    }
    let img = decode::decode(&bytes, limits)?;
    write_input_tensor(&img, &mut tensor);
    Ok(EmbedInput {
        tensor,
        copy: Some(copy_input(&img)?),
    })
}
