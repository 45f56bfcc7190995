#!/usr/bin/env bash
# Builds the clawbox-gateway image from a local base image (no registry needed).
#
#   build.sh ROOT IMAGE DIGEST BASE_IMAGE   stage a context from the clawbox tree ROOT and `docker build` it
#   build.sh --stage-only ROOT CTX          only stage the context into CTX (for building elsewhere)
#
# ROOT must hold a built clawbox (dist/src/cli/main.js, from `npm run build`), package.json, package-lock.json and
# node_modules. The node binary is CLAWBOX_NODE (default /usr/bin/node). runner/images.ts drives this script.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
node_bin="${CLAWBOX_NODE:-/usr/bin/node}"

die() { echo "build.sh: $*" >&2; exit 1; }

stage() {
  local root="$1" ctx="$2"
  [[ -f "$root/dist/src/cli/main.js" ]] || die "$root/dist/src/cli/main.js is missing; run 'npm run build' first"
  [[ -x "$node_bin" ]] || die "no node binary at $node_bin"
  echo "step: stage gateway context"
  mkdir -p "$ctx/lib" "$ctx/clawbox/node_modules"
  cp "$here/Dockerfile" "$ctx/Dockerfile"
  cp -L "$node_bin" "$ctx/node"
  # Copy node's libraries except glibc's own (libc, libm, libdl, libpthread, the loader): those must match the
  # base image's loader, while libstdc++/libgcc_s are what this node binary was linked against.
  ldd "$node_bin" | awk '/=> \//{print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|ld-linux*) ;;
      *) cp -L "$lib" "$ctx/lib/" ;;
    esac
  done
  cp -a "$root/dist" "$root/package.json" "$ctx/clawbox/"
  # The gateway runs dist/src/cli/main.js; the CLI bundle and the code caches beside it stay out (runner/images.ts
  # GATEWAY_SKIPS_DIST leaves them out of the image digest too).
  rm -rf "$ctx/clawbox/dist/bundle"
  # Production dependencies only: package-lock.json marks dev-only packages with "dev": true.
  "$node_bin" -e '
    const lock = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    for (const [p, meta] of Object.entries(lock.packages ?? {})) {
      if (p.startsWith("node_modules/") && !meta.dev && !p.slice(13).includes("/node_modules/")) console.log(p);
    }' "$root/package-lock.json" | while read -r p; do
    if [[ -e "$root/$p" ]]; then
      mkdir -p "$ctx/clawbox/$(dirname "$p")"
      cp -a "$root/$p" "$ctx/clawbox/$p"
    fi
  done
}

if [[ "${1:-}" == "--stage-only" ]]; then
  [[ $# -eq 3 ]] || die "usage: build.sh --stage-only ROOT CTX"
  stage "$2" "$3"
  exit 0
fi
[[ $# -eq 4 ]] || die "usage: build.sh ROOT IMAGE DIGEST BASE_IMAGE | --stage-only ROOT CTX"
root="$1" image="$2" digest="$3" base="$4"
ctx="$(mktemp -d /var/tmp/clawbox-gateway.XXXXXX)"
trap 'rm -rf "$ctx"' EXIT
stage "$root" "$ctx"
echo "step: docker build $image"
# The classic builder builds FROM a local image without contacting a registry; --network none keeps RUN offline.
DOCKER_BUILDKIT=0 docker build --quiet --network none --pull=false \
  --build-arg "BASE_IMAGE=$base" --build-arg "IMAGE_DIGEST=$digest" -t "$image" "$ctx" >/dev/null
