//! The network at run time: locating the weights and ONNX Runtime, loading the runtime
//! library once per process, and running batches through an ONNX Runtime session.
//!
//! Not here: preprocessing (`preprocess`), graph construction (`onnx`), batching of
//! concurrent callers (`embedder`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

use super::onnx::{
    self, GraphSpec, FEATURES_NAME, FEATURE_MAP_NAME, INPUT_NAME, LOGITS_NAME, NUM_CLASSES,
};
use super::weights::{Checkpoint, WeightsError};
use crate::embedding::EMBEDDING_DIM;

/// File names inside the repo's cache, as `scripts/setup.sh` lays them out.
pub const WEIGHTS_IN_CACHE: &str = "model/efficientnet-lite0.pth";
pub const ONNXRUNTIME_IN_CACHE: &str = "onnxruntime/libonnxruntime.so.1.32.0";
const SETUP_HINT: &str = "run `bash scripts/setup.sh` in the imgsearch repository to fetch it \
                          (or pass its path with the flag / environment variable)";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{what} not found (looked in: {looked}); {SETUP_HINT}")]
    NotFound { what: &'static str, looked: String },
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("cannot load ONNX Runtime from {path}: {reason}")]
    Runtime { path: String, reason: String },
    #[error("ONNX Runtime failed: {0}")]
    Inference(String),
    #[error("input holds {got} floats, expected {want} for a batch of {batch}")]
    InputShape {
        got: usize,
        want: usize,
        batch: usize,
    },
}

impl From<ort::Error> for ModelError {
    fn from(e: ort::Error) -> Self {
        ModelError::Inference(e.to_string())
    }
}

/// Where the weights and the ONNX Runtime library are.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub weights: PathBuf,
    pub onnxruntime: PathBuf,
}

impl ModelFiles {
    /// Explicit paths win; otherwise the repo's `.cache/` is searched next to the
    /// executable (target/{profile}/imgsearch → repo), in the working directory and in the
    /// source tree the binary was built from.
    pub fn locate(
        weights: Option<PathBuf>,
        onnxruntime: Option<PathBuf>,
    ) -> Result<Self, ModelError> {
        let caches = cache_dirs();
        let find = |explicit, rel, what| find_file(explicit, rel, what, &caches);
        Ok(Self {
            weights: find(weights, WEIGHTS_IN_CACHE, "EfficientNet-Lite0 weights")?,
            onnxruntime: find(onnxruntime, ONNXRUNTIME_IN_CACHE, "ONNX Runtime library")?,
        })
    }
}

/// The copy-detection model (`copy_model`): `explicit`, or the repo's `.cache/` as for
/// [`ModelFiles::locate`].
pub fn locate_copy_model(explicit: Option<PathBuf>) -> Result<PathBuf, ModelError> {
    find_file(
        explicit,
        super::copy_model::COPY_MODEL_IN_CACHE,
        "copy-detection model (SSCD)",
        &cache_dirs(),
    )
}

/// The salient-object model behind `Crop=true` (`subject`): `explicit`, or the repo's
/// `.cache/` as for [`ModelFiles::locate`].
pub fn locate_subject_model(explicit: Option<PathBuf>) -> Result<PathBuf, ModelError> {
    find_file(
        explicit,
        super::subject::SUBJECT_MODEL_IN_CACHE,
        "subject model (U-2-Net small, u2netp.onnx)",
        &cache_dirs(),
    )
}

/// `explicit` if it is a file, else the first cache holding `rel`.
fn find_file(
    explicit: Option<PathBuf>,
    rel: &str,
    what: &'static str,
    caches: &[PathBuf],
) -> Result<PathBuf, ModelError> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p)
        } else {
            Err(ModelError::NotFound {
                what,
                looked: p.display().to_string(),
            })
        };
    }
    let candidates: Vec<PathBuf> = caches.iter().map(|c| c.join(rel)).collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| ModelError::NotFound {
            what,
            looked: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

fn cache_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        let exe = exe.canonicalize().unwrap_or(exe);
        // Walk up from the executable: covers target/release/, target/debug/deps/ and an
        // installed copy beside a `.cache`.
        for dir in exe.ancestors().skip(1).take(4) {
            dirs.push(dir.join(".cache"));
        }
    }
    if let Ok(cwd) = std::env::current_dir() {
        dirs.push(cwd.join(".cache"));
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache"));
    dirs.dedup();
    dirs
}

/// The process-wide ONNX Runtime environment. The library can be loaded only once per
/// process, so the first path given wins.
pub(super) fn runtime(lib: &Path) -> Result<ort::environment::Environment, ModelError> {
    static ENV: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();
    let env = ENV.get_or_init(|| {
        let builder = ort::init_from(lib).map_err(|e| e.to_string())?;
        builder
            .with_name("imgsearch")
            .build()
            .map_err(|e| e.to_string())
    });
    env.clone().map_err(|reason| ModelError::Runtime {
        path: lib.display().to_string(),
        reason,
    })
}

/// Session settings; the default is one thread per core, no spinning.
#[derive(Debug, Clone, Copy, Default)]
pub struct ModelOptions {
    /// ONNX Runtime intra-op threads (0 = one per core).
    pub intra_threads: usize,
    /// Let idle intra-op threads spin. Faster for back-to-back inference alone; wastes
    /// CPU that decoding threads could use when both share the cores.
    pub spinning: bool,
}

/// Per-image outputs of one batch, row-major: `features` is batch×1280, `logits` batch×1000,
/// `feature_map` batch×1280×side×side when the graph has that output (else empty).
#[derive(Debug, Clone, Default)]
pub struct ModelOutput {
    pub features: Vec<f32>,
    pub logits: Vec<f32>,
    pub feature_map: Vec<f32>,
    pub map_side: usize,
}

impl ModelOutput {
    pub fn batch(&self) -> usize {
        self.features.len() / EMBEDDING_DIM
    }

    pub fn features_of(&self, i: usize) -> &[f32] {
        &self.features[i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM]
    }

    pub fn logits_of(&self, i: usize) -> &[f32] {
        &self.logits[i * NUM_CLASSES..(i + 1) * NUM_CLASSES]
    }

    /// Image `i`'s activation map (1280 channels × side × side, channel-major); empty
    /// when the graph was built without it.
    pub fn feature_map_of(&self, i: usize) -> &[f32] {
        let n = EMBEDDING_DIM * self.map_side * self.map_side;
        self.feature_map.get(i * n..(i + 1) * n).unwrap_or(&[])
    }
}

/// EfficientNet-Lite0 in an ONNX Runtime session.
pub struct EfficientNet {
    session: Session,
    spec: GraphSpec,
}

impl EfficientNet {
    /// Reads the checkpoint, builds the graph and opens a session on it.
    pub fn load(files: &ModelFiles, options: ModelOptions) -> Result<Self, ModelError> {
        let graph = build_graph(&files.weights)?;
        Self::from_onnx(&files.onnxruntime, &graph, options)
    }

    /// A session on the reference graph (`GraphSpec::default()`).
    pub fn from_onnx(lib: &Path, graph: &[u8], options: ModelOptions) -> Result<Self, ModelError> {
        Self::from_onnx_spec(lib, graph, GraphSpec::default(), options)
    }

    /// A session on a graph built with `spec` (`build_graph_with`).
    pub fn from_onnx_spec(
        lib: &Path,
        graph: &[u8],
        spec: GraphSpec,
        options: ModelOptions,
    ) -> Result<Self, ModelError> {
        let env = runtime(lib)?;
        let threads = if options.intra_threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            options.intra_threads
        };
        let session = Session::builder(&env)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(ort::Error::from)?
            .with_intra_threads(threads)
            .map_err(ort::Error::from)?
            .with_inter_threads(1)
            .map_err(ort::Error::from)?
            .with_intra_op_spinning(options.spinning)
            .map_err(ort::Error::from)?
            .commit_from_memory(graph)?;
        Ok(Self { session, spec })
    }

    pub fn spec(&self) -> GraphSpec {
        self.spec
    }

    /// Floats in one input tensor: 3 × side × side.
    pub fn input_len(&self) -> usize {
        3 * self.spec.input_size * self.spec.input_size
    }

    /// Runs `batch` preprocessed images (`batch * input_len()` floats, NCHW).
    pub fn run(&mut self, input: &[f32], batch: usize) -> Result<ModelOutput, ModelError> {
        let want = batch * self.input_len();
        if batch == 0 || input.len() != want {
            return Err(ModelError::InputShape {
                got: input.len(),
                want,
                batch,
            });
        }
        let side = self.spec.input_size;
        let shape = [batch, 3, side, side];
        let tensor = TensorRef::from_array_view((shape, input))?;
        let outputs = self.session.run(ort::inputs![INPUT_NAME => tensor])?;
        let (_, features) = outputs[FEATURES_NAME].try_extract_tensor::<f32>()?;
        let (_, logits) = outputs[LOGITS_NAME].try_extract_tensor::<f32>()?;
        let (feature_map, map_side) = if self.spec.feature_map {
            let (_, map) = outputs[FEATURE_MAP_NAME].try_extract_tensor::<f32>()?;
            (map.to_vec(), self.spec.map_side())
        } else {
            (Vec::new(), 0)
        };
        Ok(ModelOutput {
            features: features.to_vec(),
            logits: logits.to_vec(),
            feature_map,
            map_side,
        })
    }
}

/// The ONNX graph (serialised) for the weights at `path`.
pub fn build_graph(weights: &Path) -> Result<Vec<u8>, ModelError> {
    build_graph_with(weights, GraphSpec::default())
}

/// [`build_graph`] for another input size and/or with the `feature_map` output.
pub fn build_graph_with(weights: &Path, spec: GraphSpec) -> Result<Vec<u8>, ModelError> {
    let ckpt = Checkpoint::load(weights)?;
    Ok(onnx::build_efficientnet_lite0_with(&ckpt, spec)?)
}

/// Softmax probabilities of the top `k` logits, best first: (class index, probability).
pub fn top_k(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    idx.into_iter()
        .take(k)
        .map(|i| (i, (logits[i] - max).exp() / sum))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_and_normalises() {
        let top = top_k(&[0.0, 2.0, 1.0], 2);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2]);
        let e = [1.0f32, 2.0f32.exp(), 1.0f32.exp()];
        let s: f32 = e.iter().sum();
        assert!((top[0].1 - e[1] / s).abs() < 1e-6);
    }

    #[test]
    fn missing_files_say_how_to_get_them() {
        let err = ModelFiles::locate(Some("/nonexistent/w.pth".into()), None).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/nonexistent/w.pth") && msg.contains("scripts/setup.sh"),
            "{msg}"
        );
    }
}
