# Everyday recipes. `cargo install just` to get just itself.

# List the recipes.
default:
    @just --list

# The server on its embedded default, with the demo service.
demo:
    cargo run --release -p srv-secrets -- serve --demo

# Install srv-secrets and deploy (release builds) into ROOT/bin: /usr/local/bin by
# default, where docs/srv-secrets.service runs them (as root, for /usr/local); then their
# shell completions and man pages under ROOT/share, where bash, zsh, fish and man look.
install root="/usr/local":
    cargo install --locked --path srv-secrets --root {{root}}
    cargo install --locked --path cmd-deploy --root {{root}}
    install -d {{root}}/share/bash-completion/completions {{root}}/share/zsh/site-functions {{root}}/share/fish/vendor_completions.d {{root}}/share/man/man1
    for b in deploy srv-secrets; do {{root}}/bin/$b completions bash > {{root}}/share/bash-completion/completions/$b; {{root}}/bin/$b completions zsh > {{root}}/share/zsh/site-functions/_$b; {{root}}/bin/$b completions fish > {{root}}/share/fish/vendor_completions.d/$b.fish; {{root}}/bin/$b manpage --dir {{root}}/share/man/man1; done

# Every test, as CI runs them (root and qemu for the kernel-mount tests).
test:
    cargo test --workspace

# Only the kernel v9fs tests (qemu; ~3-10 s a boot).
test-kernel:
    cargo test -p srv-secrets-tests --test kernel_secrets --test kernel_ramfs --test vm_smoke

# Formatting and lints, as CI would want them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Benchmarks that print numbers (docs/performance.md says how to read them).
bench:
    cargo bench -p ninep --bench load
    cargo bench -p secrets
    cargo bench -p srv-secrets --bench audit

# kill -9 the server thousands of times mid-write (default 5000).
soak iterations="5000":
    tests/soak/crash.sh {{iterations}}

# Coverage-guided fuzzing of the 9P decoder and server core (needs nightly and cargo-fuzz).
fuzz target="decode" seconds="60":
    cd crates/ninep/fuzz && cargo +nightly fuzz run {{target}} -- -max_total_time={{seconds}}

# The ramfs example, to mount with any 9P client.
ramfs socket="/tmp/ramfs.sock":
    cargo run -p ninep --example ramfs -- --listen unix:{{socket}} --populate

# API documentation.
doc:
    cargo doc --workspace --no-deps --open
