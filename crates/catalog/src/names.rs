//! The name rules: tiers, secrets and services, as the namespace has them (the `model`
//! crate), so that a name the catalog accepts is one a ctl command can carry and the
//! vault stores.
//!
//! Secret names follow the name rule; a service is not one of the server's own names
//! either; tier names are narrower, because they end up in paths of other systems
//! (`secrets/plans/<service>/<tier>`, bundle names, CI job names).

pub use model::{MAX_TIER_LEN, is_valid_service, is_valid_tier};

/// Whether `name` is a secret name (the name rule).
pub fn is_valid_secret(name: &str) -> bool {
    model::is_valid_name(name)
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
