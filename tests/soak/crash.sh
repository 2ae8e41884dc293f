#!/usr/bin/env bash
# A long crash soak: kill -9 srv-secrets N times (default 5000) in the middle of set,
# grant, revoke and rotate-key, checking after each restart that every acknowledged
# command survived and every value decrypts. CI runs the same test with 200.
set -euo pipefail
cd "$(dirname "$0")/../.."
CRASH_ITERATIONS="${1:-5000}" exec cargo test --release -p srv-secrets-tests --test crash -- --nocapture
