//! What the repository promises outside the code: the licences every crate declares, the
//! checks .ci/run makes, and the install step the docs and the justfile share.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::path::Path;

fn read(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_licences_every_crate_declares_are_at_the_root() {
    assert!(
        read("Cargo.toml").contains("license = \"MIT OR Apache-2.0\""),
        "the workspace declares MIT OR Apache-2.0"
    );
    let mit = read("LICENSE-MIT");
    assert!(mit.starts_with("MIT License\n\nCopyright (c) the srv-secrets developers\n"));
    assert!(mit.contains("THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND"));
    let apache = read("LICENSE-APACHE");
    assert!(
        apache.contains("Apache License\n                           Version 2.0, January 2004")
    );
    assert!(apache.contains("END OF TERMS AND CONDITIONS"));
}

#[test]
fn ci_checks_format_and_lints_before_the_readmes_test_command_and_verifies_the_unit() {
    let ci = read(".ci/run");
    let at = |needle: &str| {
        ci.find(needle)
            .unwrap_or_else(|| panic!(".ci/run lacks {needle:?}"))
    };
    let test = at("\ncargo test --workspace\n");
    assert!(at("\ncargo fmt --all -- --check\n") < test);
    assert!(at("\ncargo clippy --workspace --all-targets -- -D warnings\n") < test);
    assert!(at("systemd-analyze verify") > test);
    // Both units, each verified and scored against a threshold.
    let units = at("\nfor unit in srv-secrets.service:4 srv-secrets-network.service:11; do\n");
    assert!(units > test);
    assert!(at("systemd-analyze security --offline=yes --threshold=\"$threshold\"") > units);
    for unit in ["srv-secrets.service", "srv-secrets-network.service"] {
        assert!(
            read(&format!("docs/{unit}")).contains("\nExecStart=/usr/local/bin/srv-secrets serve ")
        );
        assert!(
            read("docs/operations.md").contains(&format!("| `{unit}` |")),
            "docs/operations.md reports {unit}'s score"
        );
    }
    assert!(at("cargo install --quiet --locked --debug --path srv-secrets --root") > test);
    // systemd-analyze comes with the systemd package, which a minimal image lacks; curl
    // and openssl are the TLS tests' (tests/tests/tls.rs).
    let install = &ci[at("apt-get install")..];
    let packages = &install[..install.find(">/dev/null").unwrap_or(install.len())];
    for package in ["systemd", "strace", "util-linux", "curl", "openssl"] {
        assert!(
            packages.split_whitespace().any(|word| word == package),
            "{package} is in the apt-get list"
        );
    }
    // The README's test command is the same one.
    assert!(read("README.md").contains("```sh\ncargo test --workspace\n```"));
}

#[test]
fn the_install_step_of_the_docs_is_the_justfiles_and_puts_the_binaries_where_the_unit_runs_them() {
    let just = read("justfile");
    let ops = read("docs/operations.md");
    for package in ["srv-secrets", "cmd-deploy"] {
        let recipe = format!("    cargo install --locked --path {package} --root {{{{root}}}}\n");
        assert!(just.contains(&recipe), "justfile: {recipe:?}");
        let documented = format!("cargo install --locked --path {package} --root /usr/local\n");
        assert!(
            ops.contains(&documented),
            "docs/operations.md: {documented:?}"
        );
    }
    assert!(just.contains("install root=\"/usr/local\":"));
    let unit = read("docs/srv-secrets.service");
    assert!(unit.contains("\nExecStart=/usr/local/bin/srv-secrets serve "));
}
