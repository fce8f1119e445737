//! `EmbeddingBatcher`: inference threads that own the network and serve many callers.
//!
//! Callers preprocess their image on their own thread (so decoding runs in parallel with
//! inference), then submit the 224×224 tensor and, when the copy-detection network is
//! loaded, its 288×288 input (`copy_model`): one job, both networks, one batch each. Each inference thread (one per session; on
//! small CPUs several single-threaded sessions beat one multi-threaded session, because
//! intra-op parallelism of small convolutions scales poorly) takes the first waiting job,
//! waits up to `batch_window` for more (up to `max_batch`), runs them as one batch and
//! answers each caller. The queue is bounded: when it is full `submit` fails at once with
//! `EmbedError::QueueFull`, which the server turns into 503 instead of piling up requests.
//!
//! Not here: decoding (`decode`/`preprocess`) and anything about HTTP.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use tokio::sync::oneshot;

use super::copy_model::{CopyModel, COPY_INPUT_LEN};
use super::model::{EfficientNet, ModelError};
use super::onnx::NUM_CLASSES;
use super::preprocess::INPUT_LEN;
use crate::embedding::{l2_normalize, COPY_DIM, EMBEDDING_DIM};

#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    #[error("the embedding queue is full ({capacity} waiting); retry shortly")]
    QueueFull { capacity: usize },
    #[error("the embedder has stopped")]
    Stopped,
    #[error("the network failed: {0}")]
    Model(String),
    #[error("input tensor has {got} floats, expected {INPUT_LEN}")]
    BadInput { got: usize },
    #[error("copy-detection input has {got} bytes, expected {COPY_INPUT_LEN}")]
    BadCopyInput { got: usize },
}

/// The networks one inference thread owns: the semantic one always, the copy-detection
/// one unless the server runs without it.
pub struct Networks {
    pub semantic: EfficientNet,
    pub copy: Option<CopyModel>,
}

impl From<EfficientNet> for Networks {
    fn from(semantic: EfficientNet) -> Self {
        Networks {
            semantic,
            copy: None,
        }
    }
}

/// One image's inputs: the semantic tensor and, optionally, the copy-detection input. An
/// empty tensor with a copy input asks for the copy descriptor only (its `Inference` then
/// has an empty embedding and no logits).
pub struct EmbedInput {
    pub tensor: Vec<f32>,
    pub copy: Option<Vec<u8>>,
}

impl From<Vec<f32>> for EmbedInput {
    fn from(tensor: Vec<f32>) -> Self {
        EmbedInput { tensor, copy: None }
    }
}

impl EmbedInput {
    fn check(&self) -> Result<(), EmbedError> {
        let copy_only = self.tensor.is_empty() && self.copy.is_some();
        if self.tensor.len() != INPUT_LEN && !copy_only {
            return Err(EmbedError::BadInput {
                got: self.tensor.len(),
            });
        }
        match &self.copy {
            Some(c) if c.len() != COPY_INPUT_LEN => Err(EmbedError::BadCopyInput { got: c.len() }),
            _ => Ok(()),
        }
    }
}

/// What the network says about one image.
#[derive(Debug, Clone)]
pub struct Inference {
    /// L2-normalised pooled features, `EMBEDDING_DIM` floats.
    pub embedding: Vec<f32>,
    /// Raw class logits, `NUM_CLASSES` floats.
    pub logits: Vec<f32>,
    /// The L2-normalised copy-detection descriptor (`COPY_DIM` floats), when it was asked
    /// for and the network is loaded.
    pub copy: Option<Vec<f32>>,
}

#[derive(Debug, Clone, Copy)]
pub struct BatcherConfig {
    /// Most images per inference.
    pub max_batch: usize,
    /// How long the first job of a batch waits for company.
    pub batch_window: Duration,
    /// Jobs that may wait; beyond this `submit` fails with `QueueFull`.
    pub queue_capacity: usize,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        Self {
            max_batch: 8,
            batch_window: Duration::from_millis(2),
            queue_capacity: 256,
        }
    }
}

/// Counters the server exports as metrics.
#[derive(Debug, Default)]
pub struct BatcherStats {
    pub queued: AtomicUsize,
    pub batches: AtomicUsize,
    pub images: AtomicUsize,
    /// Batches by size: index i counts batches of size in (2^(i-1), 2^i], the last index
    /// everything larger (see [`BATCH_SIZE_BOUNDS`]).
    pub batch_sizes: [AtomicUsize; BATCH_SIZE_BOUNDS.len() + 1],
}

/// Upper bounds (inclusive) of the batch-size histogram buckets in [`BatcherStats`].
pub const BATCH_SIZE_BOUNDS: [usize; 7] = [1, 2, 4, 8, 16, 32, 64];

impl BatcherStats {
    fn record_batch(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.images.fetch_add(n, Ordering::Relaxed);
        let bucket = BATCH_SIZE_BOUNDS
            .iter()
            .position(|&b| n <= b)
            .unwrap_or(BATCH_SIZE_BOUNDS.len());
        self.batch_sizes[bucket].fetch_add(1, Ordering::Relaxed);
    }
}

struct Job {
    input: EmbedInput,
    reply: oneshot::Sender<Result<Inference, EmbedError>>,
}

/// A submitted job; wait on it synchronously or asynchronously.
pub struct Ticket(oneshot::Receiver<Result<Inference, EmbedError>>);

impl Ticket {
    pub fn wait(self) -> Result<Inference, EmbedError> {
        self.0.blocking_recv().unwrap_or(Err(EmbedError::Stopped))
    }

    pub async fn wait_async(self) -> Result<Inference, EmbedError> {
        self.0.await.unwrap_or(Err(EmbedError::Stopped))
    }
}

pub struct EmbeddingBatcher {
    tx: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    config: BatcherConfig,
    stats: Arc<BatcherStats>,
    has_copy_model: bool,
}

impl EmbeddingBatcher {
    pub fn start(model: impl Into<Networks>, config: BatcherConfig) -> Self {
        Self::start_many(vec![model], config)
    }

    /// One inference thread per model (session); they share one queue.
    pub fn start_many<M: Into<Networks>>(models: Vec<M>, config: BatcherConfig) -> Self {
        let models: Vec<Networks> = models.into_iter().map(Into::into).collect();
        let has_copy_model = !models.is_empty() && models.iter().all(|m| m.copy.is_some());
        let config = BatcherConfig {
            max_batch: config.max_batch.max(1),
            queue_capacity: config.queue_capacity.max(1),
            ..config
        };
        let (tx, rx) = bounded(config.queue_capacity);
        let stats = Arc::new(BatcherStats::default());
        let workers = models
            .into_iter()
            .enumerate()
            .filter_map(|(i, model)| {
                let (rx, stats) = (rx.clone(), stats.clone());
                std::thread::Builder::new()
                    .name(format!("inference-{i}"))
                    .spawn(move || inference_loop(model, rx, config, &stats))
                    .ok()
            })
            .collect();
        Self {
            tx: Some(tx),
            workers,
            config,
            stats,
            has_copy_model,
        }
    }

    /// Whether every inference thread runs the copy-detection network too.
    pub fn has_copy_model(&self) -> bool {
        self.has_copy_model
    }

    pub fn stats(&self) -> &BatcherStats {
        &self.stats
    }

    pub fn config(&self) -> BatcherConfig {
        self.config
    }

    /// Queues one preprocessed image (`INPUT_LEN` floats, and optionally the copy input);
    /// fails at once when full.
    pub fn submit(&self, input: impl Into<EmbedInput>) -> Result<Ticket, EmbedError> {
        let input = input.into();
        input.check()?;
        let tx = self.tx.as_ref().ok_or(EmbedError::Stopped)?;
        let (reply, rx) = oneshot::channel();
        match tx.try_send(Job { input, reply }) {
            Ok(()) => {
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
                Ok(Ticket(rx))
            }
            Err(TrySendError::Full(_)) => Err(EmbedError::QueueFull {
                capacity: self.config.queue_capacity,
            }),
            Err(TrySendError::Disconnected(_)) => Err(EmbedError::Stopped),
        }
    }

    /// Queues one image, waiting for room instead of failing (batch tools, not servers).
    pub fn submit_wait(&self, input: impl Into<EmbedInput>) -> Result<Ticket, EmbedError> {
        let input = input.into();
        input.check()?;
        let tx = self.tx.as_ref().ok_or(EmbedError::Stopped)?;
        let (reply, rx) = oneshot::channel();
        tx.send(Job { input, reply })
            .map_err(|_| EmbedError::Stopped)?;
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        Ok(Ticket(rx))
    }

    /// Whether the inference threads are up (the model is loaded and serving).
    pub fn is_running(&self) -> bool {
        self.tx.is_some()
            && !self.workers.is_empty()
            && self.workers.iter().all(|w| !w.is_finished())
    }

    /// Jobs waiting for the inference thread right now.
    pub fn queue_depth(&self) -> usize {
        self.tx.as_ref().map_or(0, |tx| tx.len())
    }
}

impl Drop for EmbeddingBatcher {
    /// Finishes queued work, then stops the inference thread.
    fn drop(&mut self) {
        self.tx.take();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn inference_loop(
    mut nets: Networks,
    rx: Receiver<Job>,
    config: BatcherConfig,
    stats: &BatcherStats,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(config.max_batch);
    let mut input: Vec<f32> = Vec::with_capacity(config.max_batch * INPUT_LEN);
    let mut copy_input: Vec<u8> = Vec::new();
    while let Ok(first) = rx.recv() {
        jobs.push(first);
        let deadline = Instant::now() + config.batch_window;
        while jobs.len() < config.max_batch {
            // Take whatever is already queued without waiting, then wait out the window.
            match rx.try_recv() {
                Ok(job) => {
                    jobs.push(job);
                    continue;
                }
                Err(_) if config.batch_window.is_zero() => break,
                Err(_) => {}
            }
            match rx.recv_deadline(deadline) {
                Ok(job) => jobs.push(job),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let n = jobs.len();
        stats.record_batch(n);
        match run_batch(&mut nets, &jobs, &mut input, &mut copy_input) {
            Ok(results) => {
                for (job, result) in jobs.drain(..).zip(results) {
                    let _ = job.reply.send(Ok(result));
                }
            }
            Err(e) => {
                let err = model_error(&e);
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// Runs one batch through the semantic network and, for the jobs that asked, the copy
/// network; one `Inference` per job, in order.
fn run_batch(
    nets: &mut Networks,
    jobs: &[Job],
    input: &mut Vec<f32>,
    copy_input: &mut Vec<u8>,
) -> Result<Vec<Inference>, ModelError> {
    input.clear();
    let semantic: Vec<usize> = (0..jobs.len())
        .filter(|&i| !jobs[i].input.tensor.is_empty())
        .collect();
    for &i in &semantic {
        input.extend_from_slice(&jobs[i].input.tensor);
    }
    let out = if semantic.is_empty() {
        None
    } else {
        Some(nets.semantic.run(input, semantic.len())?)
    };
    let mut rows: Vec<Option<usize>> = vec![None; jobs.len()];
    for (row, &i) in semantic.iter().enumerate() {
        rows[i] = Some(row);
    }
    let mut copies: Vec<Option<Vec<f32>>> = vec![None; jobs.len()];
    if let Some(copy_net) = nets.copy.as_mut() {
        copy_input.clear();
        let wanted: Vec<usize> = (0..jobs.len())
            .filter(|&i| jobs[i].input.copy.is_some())
            .collect();
        for &i in &wanted {
            copy_input.extend_from_slice(jobs[i].input.copy.as_deref().unwrap_or_default());
        }
        if !wanted.is_empty() {
            let descs = copy_net.run(copy_input, wanted.len())?;
            for (row, &i) in descs.chunks_exact(COPY_DIM).zip(&wanted) {
                copies[i] = Some(row.to_vec());
            }
        }
    }
    Ok(copies
        .into_iter()
        .enumerate()
        .map(|(i, copy)| {
            let (mut embedding, logits) = match (&out, rows[i]) {
                (Some(out), Some(row)) => {
                    (out.features_of(row).to_vec(), out.logits_of(row).to_vec())
                }
                _ => (Vec::new(), Vec::new()),
            };
            l2_normalize(&mut embedding);
            debug_assert!(embedding.is_empty() || embedding.len() == EMBEDDING_DIM);
            debug_assert!(logits.is_empty() || logits.len() == NUM_CLASSES);
            Inference {
                embedding,
                logits,
                copy,
            }
        })
        .collect())
}

fn model_error(e: &ModelError) -> EmbedError {
    EmbedError::Model(e.to_string())
}
