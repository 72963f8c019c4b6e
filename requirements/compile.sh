#!/usr/bin/env bash
# Regenerates the lock files from pyproject.toml (run `make lock` after changing a dependency).
# One lock per install flavour, each with hashes, resolved for CPython 3.11 on x86-64 Linux:
#   cpu.lock / gpu.lock      everything `make install` needs (worker, training, eval, dev tools)
#   worker-cpu.lock / -gpu   a worker that serves from artifacts: no torch, no dev tools
#   tools.lock               the installer itself (uv), so the bootstrap is pinned too
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-uv}
compile() {  # compile OUT EXTRA...
    local out=$1; shift
    local args=()
    for extra in "$@"; do args+=(--extra "$extra"); done
    "$UV" pip compile pyproject.toml "${args[@]}" --generate-hashes --quiet \
        --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
        --custom-compile-command "make lock" -o "requirements/$out"
}
compile cpu.lock cpu train eval dev
compile gpu.lock gpu train eval dev
compile worker-cpu.lock cpu
compile worker-gpu.lock gpu
echo "uv==0.13.8" | "$UV" pip compile - --generate-hashes --quiet --python-version 3.11 \
    --python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" \
    -o requirements/tools.lock
