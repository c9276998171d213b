#!/usr/bin/env bash
# Builds the three netstream images from docker/Dockerfile (one builder stage, three targets).
#   docker/build.sh                      tags ghcr.io/netstream-dev/netstream-<name>:<workspace version>
#   REGISTRY=registry.example/netstream TAG=dev docker/build.sh
#   docker/build.sh --push               also push them
# Needs Docker with BuildKit (docker buildx) or Podman (`DOCKER=podman`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
docker="${DOCKER:-docker}"
registry="${REGISTRY:-ghcr.io/netstream-dev}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)"
tag="${TAG:-$version}"
revision="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
push=0
[ "${1:-}" = "--push" ] && push=1

for target in operator probe processor; do
  image="$registry/netstream-$target:$tag"
  echo "==> $image" >&2
  DOCKER_BUILDKIT=1 "$docker" build -f "$root/docker/Dockerfile" --target "$target" \
    --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
    -t "$image" "$root"
  if [ "$push" -eq 1 ]; then "$docker" push "$image"; fi
done
