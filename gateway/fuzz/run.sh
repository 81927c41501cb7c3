#!/usr/bin/env bash
# Runs the gateway's fuzz target for the given seconds (default 10), from the seeds in
# seeds/graphql_request and what earlier runs found (corpus/graphql_request, not committed).
# An input that panics (no answer, an error without a code), runs out of memory or takes over
# the target's bound fails the script; libFuzzer leaves it in artifacts/graphql_request/
# (replay: cargo +nightly fuzz run graphql_request <file>).
#
#   gateway/fuzz/run.sh 60
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Builds into
# $CARGO_TARGET_DIR when set, else gateway/fuzz/target. Without a sanitizer by default: what
# the target looks for are panics and slow inputs; SANITIZER=address turns it on.
set -euo pipefail

seconds="${1:-10}"
sanitizer="${SANITIZER:-none}"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

target=graphql_request
cargo +nightly fuzz build --sanitizer "$sanitizer" "$target"
mkdir -p "corpus/$target" "artifacts/$target"
echo "== $target: ${seconds}s"
cargo +nightly fuzz run --sanitizer "$sanitizer" "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -dict="$target.dict" -artifact_prefix="artifacts/$target/" -print_final_stats=1
