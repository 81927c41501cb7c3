# Classroom: every command a developer or CI needs. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

root := justfile_directory()
tools := root / "tools"
target_dir := env("CARGO_TARGET_DIR", root / "target")
dist := root / "frontend" / "dist"
wasm_bindgen_version := `sed -n '/^name = "wasm-bindgen"$/{n;s/version = "\(.*\)"/\1/p}' Cargo.lock`
binaryen_version := "132"

# Debian packages the build and the tests need.
apt_packages := "pkg-config libssl-dev libpq-dev libsqlite3-dev libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-tools gstreamer1.0-plugins-base-apps gstreamer1.0-x fonts-dejavu-core chromium chromium-driver postgresql python3-venv"

export PATH := tools / "bin" + ":" + tools / "node_modules" / ".bin" + ":" + env("PATH")

# List the recipes.
default:
    @just --list

# Install what is missing: Debian packages, the wasm target, wasm-bindgen-cli, wasm-opt. Idempotent.
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    missing=()
    for p in {{apt_packages}}; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        line="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
        if [ "$(id -u)" -ne 0 ]; then
            echo "error: missing Debian packages. Run as root:" >&2
            echo "  $line" >&2
            exit 1
        fi
        echo "setup: installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
        echo "setup: adding the wasm32-unknown-unknown target"
        rustup target add wasm32-unknown-unknown
    fi
    if [ "$({{tools}}/bin/wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen {{wasm_bindgen_version}}" ]; then
        echo "setup: installing wasm-bindgen-cli {{wasm_bindgen_version}} into tools/ (about 2 minutes)"
        # Not --locked: its lock file pins a webpki-roots version this registry does not serve.
        cargo install --quiet wasm-bindgen-cli --version {{wasm_bindgen_version}} --root {{tools}}
    fi
    # Debian's binaryen (108) breaks the bundle; npm's binaryen works. Without npm, builds skip wasm-opt.
    if [ ! -x {{tools}}/node_modules/.bin/wasm-opt ]; then
        if command -v npm >/dev/null; then
            echo "setup: installing wasm-opt (binaryen {{binaryen_version}}) into tools/"
            npm install --prefix {{tools}} --no-save --no-audit --no-fund --loglevel=error binaryen@{{binaryen_version}} >/dev/null \
                || echo "setup: wasm-opt unavailable; release bundles stay unoptimised"
        else
            echo "setup: npm not found; release bundles stay unoptimised"
        fi
    fi

    # The real OpenID Connect provider the sign-in tests run against (npm's oidc-provider).
    if [ ! -d {{root}}/gateway/tests/oidc/node_modules/oidc-provider ]; then
        echo "setup: installing the test OIDC provider (npm ci in gateway/tests/oidc)"
        npm ci --prefix {{root}}/gateway/tests/oidc --no-audit --no-fund --loglevel=error >/dev/null
    fi

    # The S3-compatible server the recorder's upload test runs against (moto, from PyPI).
    if [ ! -x {{tools}}/moto/bin/moto_server ]; then
        echo "setup: installing moto (S3 test server) into tools/moto"
        python3 -m venv {{tools}}/moto
        {{tools}}/moto/bin/pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
    fi

# Build the Leptos app into frontend/dist (profile: debug or release).
frontend profile="debug":
    #!/usr/bin/env bash
    set -euo pipefail
    case "{{profile}}" in
        debug) cargo_profile=dev; out=debug ;;
        release) cargo_profile=wasm-release; out=wasm-release ;;
        *) echo "error: profile must be debug or release, not {{profile}}" >&2; exit 2 ;;
    esac
    cargo build --quiet -p frontend --target wasm32-unknown-unknown --profile "$cargo_profile"
    staging="{{dist}}.tmp"
    rm -rf "$staging" && mkdir -p "$staging/pkg"
    wasm-bindgen --target web --no-typescript --out-dir "$staging/pkg" \
        "{{target_dir}}/wasm32-unknown-unknown/$out/frontend.wasm"
    if [ "{{profile}}" = release ] && command -v wasm-opt >/dev/null && [ -x {{tools}}/node_modules/.bin/wasm-opt ]; then
        {{tools}}/node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
            --enable-sign-ext --enable-reference-types --enable-multivalue --enable-mutable-globals \
            "$staging/pkg/frontend_bg.wasm" -o "$staging/pkg/frontend_bg.wasm"
    fi
    cp {{root}}/frontend/index.html {{root}}/frontend/style.css {{root}}/frontend/favicon.svg {{root}}/frontend/favicon.ico "$staging/"
    # Swap in whole, so a running gateway never serves half a build.
    rm -rf "{{dist}}.old"; [ -d "{{dist}}" ] && mv "{{dist}}" "{{dist}}.old"
    mv "$staging" "{{dist}}" && rm -rf "{{dist}}.old"
    echo "frontend ({{profile}}): $(du -h {{dist}}/pkg/frontend_bg.wasm | cut -f1) wasm in frontend/dist"

# Start the product at http://127.0.0.1:8080 (args go to the gateway, e.g. `just run --help`).
run *args: setup (frontend "release")
    cargo run --release -p gateway -- {{args}}

# Everything CI checks: formatting, lints, all tests (unit, integration, real-browser), the wasm build.
test: setup
    cargo fmt --all --check
    just lint
    just frontend release
    cargo test --workspace --exclude frontend
    # The app's pure logic (reducers, labels, return addresses), natively.
    cargo test -p frontend
    # Every fuzz target briefly (parsers of what clients send: SDP, datagrams, GraphQL bodies).
    just fuzz 5

# Run every fuzz target for `seconds` each (nightly toolchain and cargo-fuzz, installed if missing).
fuzz seconds="60":
    #!/usr/bin/env bash
    set -euo pipefail
    if ! rustup toolchain list | grep -q '^nightly'; then
        echo "setup: installing the nightly toolchain (cargo fuzz needs it)"
        rustup toolchain install nightly --profile minimal
    fi
    if ! command -v cargo-fuzz >/dev/null; then
        echo "setup: installing cargo-fuzz"
        cargo install --quiet --locked cargo-fuzz
    fi
    # One target directory for both fuzz workspaces, so they share what they have in common.
    export CARGO_TARGET_DIR="{{target_dir}}/fuzz"
    {{root}}/sfu/fuzz/run.sh {{seconds}}
    {{root}}/gateway/fuzz/run.sh {{seconds}}

# Clippy with warnings as errors, native crates and the wasm app.
lint:
    cargo clippy --workspace --exclude frontend --all-targets -- -D warnings
    cargo clippy -p frontend --target wasm32-unknown-unknown -- -D warnings

# Format all code.
fmt:
    cargo fmt --all

# The video-quality scenario in Chromium alone, with its report (it also runs in `just test`).
quality:
    cargo test -p gateway --test quality -- --nocapture

# Run the benchmarks (args go to criterion, e.g. `just bench shard`).
bench *args:
    cargo bench -p benches -- {{args}}
