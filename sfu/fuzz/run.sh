#!/usr/bin/env bash
# Runs each fuzz target of the SFU for the given seconds (default 10), from the seeds in
# seeds/<target> and what earlier runs found (corpus/<target>, not committed). A target that
# panics, runs out of memory or takes over 10 s on one input fails the script; libFuzzer
# leaves the input in artifacts/<target>/ (replay: cargo +nightly fuzz run <target> <file>).
#
#   sfu/fuzz/run.sh 60
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Builds into
# $CARGO_TARGET_DIR when set, else sfu/fuzz/target. Without a sanitizer by default: what the
# targets look for are panics and slow inputs, and AddressSanitizer makes them 15 times slower;
# SANITIZER=address turns it on.
set -euo pipefail

seconds="${1:-10}"
sanitizer="${SANITIZER:-none}"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

targets=(sdp_offer datagram)
cargo +nightly fuzz build --sanitizer "$sanitizer"
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    extra=()
    if [[ -f "$target.dict" ]]; then
        extra+=("-dict=$target.dict")
    fi
    echo "== $target: ${seconds}s"
    cargo +nightly fuzz run --sanitizer "$sanitizer" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${extra[@]}"
done
