//! The name rule and size limits, checked here even though the ctl parser checks them too
//! (defence in depth: the server is not the only caller). The rule and the limits are the
//! namespace's, from the `model` crate, so the two checks cannot drift apart; what is
//! here is the vault's errors for them.

pub use model::{
    MAX_MANIFEST_LEN, MAX_NAME_LEN, MAX_VALUE_LEN, RESERVED_SERVICE_NAMES, is_valid_name,
};

use crate::error::{Error, Result};

/// Checks a secret name.
///
/// # Errors
/// [`Error::InvalidName`], which does not echo the name.
pub fn check_secret_name(name: &str) -> Result<()> {
    check(name, "secret")
}

/// Checks a service name, including the reserved names.
///
/// # Errors
/// [`Error::InvalidName`] or [`Error::ReservedName`], neither of which echoes the name.
pub fn check_service_name(name: &str) -> Result<()> {
    check(name, "service")?;
    if model::is_reserved_service(name) {
        return Err(Error::ReservedName);
    }
    Ok(())
}

/// Checks a config key (same rule as secret names).
pub(crate) fn check_config_key(key: &str) -> Result<()> {
    check(key, "config key")
}

/// Checks a secret value's size.
///
/// # Errors
/// [`Error::TooLarge`] above [`MAX_VALUE_LEN`].
pub fn check_value(value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_LEN {
        return Err(Error::TooLarge {
            what: "secret value",
            limit: MAX_VALUE_LEN,
        });
    }
    Ok(())
}

fn check(name: &str, kind: &'static str) -> Result<()> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(Error::InvalidName { kind })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The rule itself is the model crate's, tested there; these are the vault's errors.

    #[test]
    fn reserved_service_names() {
        assert!(matches!(
            check_service_name("admin"),
            Err(Error::ReservedName)
        ));
        assert!(matches!(
            check_service_name("secrets"),
            Err(Error::ReservedName)
        ));
        assert!(check_service_name("web").is_ok());
        // Reserved only as services; a secret may be called "admin".
        assert!(check_secret_name("admin").is_ok());
    }

    #[test]
    fn errors_state_limits_and_never_echo() {
        let name = "evil name with spaces";
        let msg = check_secret_name(name).unwrap_err().to_string();
        assert!(!msg.contains(name));
        assert!(msg.contains("128"));
        let msg = check_value(&vec![b'v'; MAX_VALUE_LEN + 1])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("1048576"), "{msg}");
        assert!(check_value(&vec![0; MAX_VALUE_LEN]).is_ok());
    }

    proptest! {
        #[test]
        fn error_does_not_depend_on_the_name(name in "\\PC{0,200}") {
            // A message that is the same for every bad name cannot echo any of them.
            if let Err(e) = check_secret_name(&name) {
                let fixed = Error::InvalidName { kind: "secret" }.to_string();
                prop_assert_eq!(e.to_string(), fixed);
            }
        }

    }
}
