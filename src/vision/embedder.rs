//! `EmbeddingBatcher`: inference threads that own the network and serve many callers.
//!
//! Callers preprocess their image on their own thread (so decoding runs in parallel with
//! inference), then submit the 224×224 tensor. Each inference thread (one per session; on
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

use super::model::{EfficientNet, ModelError};
use super::onnx::NUM_CLASSES;
use super::preprocess::INPUT_LEN;
use crate::embedding::{l2_normalize, EMBEDDING_DIM};

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
}

/// What the network says about one image.
#[derive(Debug, Clone)]
pub struct Inference {
    /// L2-normalised pooled features, `EMBEDDING_DIM` floats.
    pub embedding: Vec<f32>,
    /// Raw class logits, `NUM_CLASSES` floats.
    pub logits: Vec<f32>,
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
    input: Vec<f32>,
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
}

impl EmbeddingBatcher {
    pub fn start(model: EfficientNet, config: BatcherConfig) -> Self {
        Self::start_many(vec![model], config)
    }

    /// One inference thread per model (session); they share one queue.
    pub fn start_many(models: Vec<EfficientNet>, config: BatcherConfig) -> Self {
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
        }
    }

    pub fn stats(&self) -> &BatcherStats {
        &self.stats
    }

    pub fn config(&self) -> BatcherConfig {
        self.config
    }

    /// Queues one preprocessed image (`INPUT_LEN` floats); fails at once when full.
    pub fn submit(&self, input: Vec<f32>) -> Result<Ticket, EmbedError> {
        if input.len() != INPUT_LEN {
            return Err(EmbedError::BadInput { got: input.len() });
        }
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
    pub fn submit_wait(&self, input: Vec<f32>) -> Result<Ticket, EmbedError> {
        if input.len() != INPUT_LEN {
            return Err(EmbedError::BadInput { got: input.len() });
        }
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
    mut model: EfficientNet,
    rx: Receiver<Job>,
    config: BatcherConfig,
    stats: &BatcherStats,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(config.max_batch);
    let mut input: Vec<f32> = Vec::with_capacity(config.max_batch * INPUT_LEN);
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
        input.clear();
        for job in &jobs {
            input.extend_from_slice(&job.input);
        }
        let n = jobs.len();
        stats.record_batch(n);
        match model.run(&input, n) {
            Ok(out) => {
                for (i, job) in jobs.drain(..).enumerate() {
                    let mut embedding = out.features_of(i).to_vec();
                    l2_normalize(&mut embedding);
                    debug_assert_eq!(embedding.len(), EMBEDDING_DIM);
                    let logits = out.logits_of(i).to_vec();
                    debug_assert_eq!(logits.len(), NUM_CLASSES);
                    let _ = job.reply.send(Ok(Inference { embedding, logits }));
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

fn model_error(e: &ModelError) -> EmbedError {
    EmbedError::Model(e.to_string())
}
