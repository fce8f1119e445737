#!/usr/bin/env bash
# Fetches the second picture source of `imgsearch bench copies`: the wallpapers and photos
# of the Debian package mate-backgrounds (by name and pinned version from the Debian
# archive, sha256-checked), unpacked into the git-ignored .cache/bench/pictures/.
# Idempotent. Licences: see /usr/share/doc/mate-backgrounds/copyright inside the package
# (GPL-2+, CC BY-SA and others per file); the pictures are used for measurement only.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/.cache/bench/pictures"
pkg="mate-backgrounds"
version="1.26.0-1"
sha256="7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04"

if [[ -f "$out/.done-$version" ]]; then
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download "$pkg=$version" >/dev/null 2>&1) || {
  echo "bench-pictures: apt-get download $pkg=$version failed (is the Debian archive reachable?)" >&2
  exit 1
}
deb="$(ls "$work"/*.deb)"
got="$(sha256sum "$deb" | cut -d' ' -f1)"
if [[ "$got" != "$sha256" ]]; then
  echo "bench-pictures: $deb checksum mismatch: got $got, want $sha256" >&2
  exit 1
fi
dpkg-deb -x "$deb" "$work/root"
rm -rf "$out"
mkdir -p "$out"
# Every JPEG and PNG, flattened; the largest renditions of one picture are skipped (same
# picture at several sizes would be duplicates of one another in the database).
find "$work/root/usr/share/backgrounds" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) \
  | grep -Ev '_[0-9]{3,4}x[0-9]{3,4}\.' | while read -r f; do
  cp "$f" "$out/$(basename "$(dirname "$f")")-$(basename "$f")"
done
cp "$work/root/usr/share/doc/$pkg/copyright" "$out/COPYRIGHT.txt" 2>/dev/null || true
touch "$out/.done-$version"
echo "bench-pictures: $(ls "$out" | grep -Evc '\.txt$') pictures in $out" >&2
