//! The name rules: tiers here, secrets and services as the ctl language has them.
//!
//! Secret and service names are [`ctl::is_valid_name`] (so a name the catalog accepts is one
//! a ctl command can carry) and a service is not one of the server's own names
//! ([`ctl::is_reserved_service`]). Tier names are narrower, because they end up in paths of
//! other systems (`secrets/plans/<service>/<tier>`, bundle names, CI job names).

/// Longest tier name, in bytes.
pub const MAX_TIER_LEN: usize = 32;

/// Whether `name` is a tier name: `[a-z0-9_-]{1,32}`.
pub fn is_valid_tier(name: &str) -> bool {
    (1..=MAX_TIER_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}

/// Whether `name` is a secret name (the ctl name rule).
pub fn is_valid_secret(name: &str) -> bool {
    ctl::is_valid_name(name)
}

/// Whether `name` is a service name: the ctl name rule, and not `admin` or `secrets`.
pub fn is_valid_service(name: &str) -> bool {
    ctl::is_valid_name(name) && !ctl::is_reserved_service(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers() {
        for good in ["local_dev", "desktop", "cloud-eu-1", "0", &"x".repeat(32)] {
            assert!(is_valid_tier(good), "{good}");
        }
        for bad in ["", "Desktop", "a b", "a.b", "a/b", "é", &"x".repeat(33)] {
            assert!(!is_valid_tier(bad), "{bad}");
        }
    }

    #[test]
    fn secrets_and_services() {
        assert!(is_valid_secret("postgres_connection"));
        assert!(is_valid_secret("A.b-c_d"));
        assert!(!is_valid_secret(".."));
        assert!(!is_valid_secret("a/b"));
        assert!(is_valid_service("web"));
        assert!(!is_valid_service("admin"));
        assert!(!is_valid_service("secrets"));
        // A secret may be called what a service may not.
        assert!(is_valid_secret("admin"));
    }
}
