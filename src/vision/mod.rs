//! Vision: from image bytes to embeddings and class scores.
//!
//! `decode` turns bytes into RGB pixels (sniffed by content, EXIF-oriented, bomb-checked),
//! `preprocess` resizes and normalises them into the network's input tensor, `weights`
//! reads the EfficientNet-Lite0 checkpoint, `onnx` builds the network as an ONNX graph,
//! `model` runs it on ONNX Runtime and `embedder` batches concurrent callers onto it;
//! `borders` trims uniform margins before embedding; `copy_model` runs the copy-detection
//! descriptor (SSCD) beside it; `subject` finds a picture's main subject (U-2-Net small)
//! for `Crop=true`.
//! Nothing here knows about the API's HTTP edge, the network or storage (downloading an
//! `ImageUrl` is `crate::fetch`'s job).

pub mod borders;
pub mod copy_model;
pub mod decode;
pub mod embedder;
pub mod labels;
pub mod model;
pub mod onnx;
pub mod pipeline;
pub mod preprocess;
pub mod region;
pub mod subject;
pub mod weights;
