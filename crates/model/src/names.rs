//! The name rule, and the names the server keeps for itself.
//!
//! Secret names, service names and config keys are single path elements of the
//! namespace (`/secret/NAME`, `/secrets/grants/SERVICE`, `/config/KEY`), so the rule
//! keeps them harmless there: no `/`, no `.` or `..`, nothing a shell or a log would
//! read twice.

use crate::MAX_NAME_LEN;

/// The aname that attaches the admin tree (as `deploy` does; `""` does too, for the
/// admin). A service that asks for it is told who it is, rather than just refused.
pub const ADMIN_ANAME: &str = "admin";

/// Service names the server uses for its own trees (`/secrets`, the admin's aname): a
/// service by either name could not be told from them.
pub const RESERVED_SERVICE_NAMES: [&str; 2] = [ADMIN_ANAME, "secrets"];

/// Longest tier name, in bytes.
pub const MAX_TIER_LEN: usize = 32;

/// Whether `name` follows the name rule of secrets, services and config keys:
/// `[A-Za-z0-9._-]{1,128}`, and not `.` or `..` (names are path elements).
pub fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `service` is one of the names the server keeps for itself (`admin`,
/// `secrets`); case matters, as it does for every name.
pub fn is_reserved_service(service: &str) -> bool {
    RESERVED_SERVICE_NAMES.contains(&service)
}

/// Whether `name` may name a service: the name rule, and not a reserved name.
pub fn is_valid_service(name: &str) -> bool {
    is_valid_name(name) && !is_reserved_service(name)
}

/// Whether `name` is a tier name: `[a-z0-9_-]{1,32}`. Narrower than the name rule,
/// because tiers end up in paths of other systems (`secrets/plans/SERVICE/TIER`, bundle
/// names, CI job names).
pub fn is_valid_tier(name: &str) -> bool {
    (1..=MAX_TIER_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_name_rule() {
        for ok in [
            "a",
            "db_password",
            "A.b-c_9",
            "...",
            ".hidden",
            &"x".repeat(MAX_NAME_LEN),
        ] {
            assert!(is_valid_name(ok), "{ok:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "é",
            "a\0",
            "a\n",
            "a@pending",
            &"x".repeat(MAX_NAME_LEN + 1),
        ] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn reserved_names_are_services_only_and_exact() {
        assert!(is_reserved_service("admin"));
        assert!(is_reserved_service("secrets"));
        assert!(!is_reserved_service("Admin"));
        assert!(!is_valid_service("admin"));
        assert!(!is_valid_service("secrets"));
        assert!(is_valid_service("web"));
        assert!(!is_valid_service("a/b"));
        // A secret may be called what a service may not.
        assert!(is_valid_name("admin"));
        assert!(RESERVED_SERVICE_NAMES.contains(&ADMIN_ANAME));
    }

    #[test]
    fn tiers() {
        for good in ["local_dev", "desktop", "cloud-eu-1", "0", &"x".repeat(32)] {
            assert!(is_valid_tier(good), "{good}");
        }
        for bad in ["", "Desktop", "a b", "a.b", "a/b", "é", &"x".repeat(33)] {
            assert!(!is_valid_tier(bad), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn valid_names_are_single_path_elements(name in "[A-Za-z0-9._-]{1,128}") {
            prop_assert_eq!(is_valid_name(&name), name != "." && name != "..");
            prop_assert!(!name.contains('/'));
        }

        #[test]
        fn every_tier_name_is_a_name(name in "\\PC{0,40}") {
            prop_assert!(!is_valid_tier(&name) || is_valid_name(&name));
        }
    }
}
