//! Helpers shared by the integration tests: the binary under test and the shared data.

use std::path::PathBuf;
use std::process::Command;

/// The `imgsearch` binary cargo built for these tests.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_imgsearch"))
}

/// The shared data checkout beside the repository.
pub fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// One of the 1,000 ImageNet sample photos.
pub fn sample(name: &str) -> PathBuf {
    shared().join("datasets/imagenet-samples").join(name)
}
