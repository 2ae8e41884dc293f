//! References to a provider's secret, for the `delegate` strategy: `scheme:rest`.
//!
//! | form | provider | rules |
//! |---|---|---|
//! | `github:OWNER/REPO#NAME` | a GitHub repository secret | OWNER a GitHub account (1 to 39 of A-Z a-z 0-9 and inner single `-`), REPO 1 to 100 of A-Z a-z 0-9 . _ - (not `.` or `..`), NAME a secret name as GitHub has them (A-Z a-z 0-9 _, not starting with a digit or `GITHUB_`) |
//! | `gcp:projects/P/secrets/S` | a Google Cloud Secret Manager secret | P a project id (6 to 30 of a-z 0-9 -, starting with a letter, not ending with `-`) or number; S 1 to 255 of A-Z a-z 0-9 _ - |
//! | `env:NAME` | an environment variable at the target | NAME `[A-Za-z_][A-Za-z0-9_]*`, at most 255 |
//! | `SCHEME:REST` | any other provider | SCHEME `[a-z][a-z0-9+.-]*`, at most 32; REST 1 or more printable characters, no spaces |
//!
//! A reference is at most [`MAX_REFERENCE_LEN`] bytes. Only the reference is kept (and, in
//! the strategy, whether the provider holds the secret): never the value.

use std::fmt;

use crate::error::FieldError;

/// Longest reference, in bytes.
pub const MAX_REFERENCE_LEN: usize = 1024;

/// Where a delegated secret lives.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Reference {
    /// `github:OWNER/REPO#NAME`: a repository secret.
    GitHub {
        /// The account that owns the repository.
        owner: String,
        /// The repository.
        repo: String,
        /// The secret's name in the repository.
        name: String,
    },
    /// `gcp:projects/P/secrets/S`: a Secret Manager secret.
    Gcp {
        /// The project id or number.
        project: String,
        /// The secret id.
        secret: String,
    },
    /// `env:NAME`: an environment variable at the target.
    Env {
        /// The variable.
        name: String,
    },
    /// Any other `scheme:rest`.
    Other {
        /// The scheme, lower-case.
        scheme: String,
        /// Everything after the first `:`.
        rest: String,
    },
}

impl Reference {
    /// Parses a reference, strictly for the known schemes.
    ///
    /// # Errors
    /// [`FieldError::Reference`], saying what is wrong; it does not echo the text.
    pub fn parse(text: &str) -> Result<Reference, FieldError> {
        let bad = |reason| Err(FieldError::Reference(reason));
        if text.len() > MAX_REFERENCE_LEN {
            return bad("a reference is at most 1024 bytes");
        }
        let Some((scheme, rest)) = text.split_once(':') else {
            return bad(
                "a reference starts with its scheme: github:OWNER/REPO#NAME, \
                        gcp:projects/P/secrets/S, env:NAME or SCHEME:REST",
            );
        };
        match scheme {
            "github" => github(rest),
            "gcp" => gcp(rest),
            "env" => {
                if !is_env_name(rest) {
                    return bad("env:NAME needs a variable name, [A-Za-z_][A-Za-z0-9_]* \
                                (at most 255)");
                }
                Ok(Reference::Env {
                    name: rest.to_string(),
                })
            }
            _ => {
                let mut s = scheme.bytes();
                let scheme_ok = (1..=32).contains(&scheme.len())
                    && s.next().is_some_and(|b| b.is_ascii_lowercase())
                    && s.all(|b| {
                        b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || matches!(b, b'+' | b'.' | b'-')
                    });
                if !scheme_ok {
                    return bad("a reference's scheme is [a-z][a-z0-9+.-]*, at most 32 \
                                (github, gcp, env, ...)");
                }
                if rest.is_empty() || !rest.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
                    return bad("after its scheme a reference is printable ASCII without \
                                spaces, and not empty");
                }
                Ok(Reference::Other {
                    scheme: scheme.to_string(),
                    rest: rest.to_string(),
                })
            }
        }
    }

    /// The scheme: `github`, `gcp`, `env` or another.
    pub fn scheme(&self) -> &str {
        match self {
            Reference::GitHub { .. } => "github",
            Reference::Gcp { .. } => "gcp",
            Reference::Env { .. } => "env",
            Reference::Other { scheme, .. } => scheme,
        }
    }
}

fn github(rest: &str) -> Result<Reference, FieldError> {
    const FORM: &str = "github:OWNER/REPO#NAME: OWNER an account, REPO a repository, NAME the \
                        repository secret's name";
    let bad = |reason| Err(FieldError::Reference(reason));
    let Some((path, name)) = rest.split_once('#') else {
        return bad(FORM);
    };
    let Some((owner, repo)) = path.split_once('/') else {
        return bad(FORM);
    };
    let owner_ok = (1..=39).contains(&owner.len())
        && owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !owner.starts_with('-')
        && !owner.ends_with('-')
        && !owner.contains("--");
    if !owner_ok {
        return bad("a GitHub account is 1 to 39 of A-Z a-z 0-9 and single inner hyphens");
    }
    let repo_ok = (1..=100).contains(&repo.len())
        && repo != "."
        && repo != ".."
        && repo
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !repo_ok {
        return bad("a GitHub repository is 1 to 100 of A-Z a-z 0-9 . _ -, not . or ..");
    }
    let name_ok = (1..=255).contains(&name.len())
        && !name.as_bytes()[0].is_ascii_digit()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.to_ascii_uppercase().starts_with("GITHUB_");
    if !name_ok {
        return bad(
            "a GitHub secret's name is A-Z a-z 0-9 and _, not starting with a digit \
                    or GITHUB_",
        );
    }
    Ok(Reference::GitHub {
        owner: owner.to_string(),
        repo: repo.to_string(),
        name: name.to_string(),
    })
}

fn gcp(rest: &str) -> Result<Reference, FieldError> {
    let bad = |reason| Err(FieldError::Reference(reason));
    let parts: Vec<&str> = rest.split('/').collect();
    let [projects, project, secrets, secret] = parts.as_slice() else {
        return bad("gcp:projects/P/secrets/S: P a project, S a secret");
    };
    if *projects != "projects" || *secrets != "secrets" {
        return bad("gcp:projects/P/secrets/S: P a project, S a secret");
    }
    let id_ok = (6..=30).contains(&project.len())
        && project.as_bytes()[0].is_ascii_lowercase()
        && !project.ends_with('-')
        && project
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let number_ok =
        (1..=20).contains(&project.len()) && project.bytes().all(|b| b.is_ascii_digit());
    if !id_ok && !number_ok {
        return bad(
            "a GCP project is an id (6 to 30 of a-z 0-9 -, starting with a letter) or \
                    a project number",
        );
    }
    let secret_ok = (1..=255).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if !secret_ok {
        return bad("a GCP secret id is 1 to 255 of A-Z a-z 0-9 _ -");
    }
    Ok(Reference::Gcp {
        project: (*project).to_string(),
        secret: (*secret).to_string(),
    })
}

/// Whether `name` is an environment variable name, `[A-Za-z_][A-Za-z0-9_]*`, at most 255.
pub(crate) fn is_env_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && !name.as_bytes()[0].is_ascii_digit()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::GitHub { owner, repo, name } => write!(f, "github:{owner}/{repo}#{name}"),
            Reference::Gcp { project, secret } => {
                write!(f, "gcp:projects/{project}/secrets/{secret}")
            }
            Reference::Env { name } => write!(f, "env:{name}"),
            Reference::Other { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

impl std::str::FromStr for Reference {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Reference, FieldError> {
        Reference::parse(s)
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Reference, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Reference::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;

    #[test]
    fn known_schemes() {
        assert_eq!(
            Reference::parse("github:acme/web-app#TELEGRAM_TOKEN").unwrap(),
            Reference::GitHub {
                owner: "acme".into(),
                repo: "web-app".into(),
                name: "TELEGRAM_TOKEN".into()
            }
        );
        assert_eq!(
            Reference::parse("gcp:projects/my-project-1/secrets/db-password").unwrap(),
            Reference::Gcp {
                project: "my-project-1".into(),
                secret: "db-password".into()
            }
        );
        assert!(Reference::parse("gcp:projects/123456789/secrets/s").is_ok());
        assert_eq!(
            Reference::parse("env:POSTGRES_URL").unwrap(),
            Reference::Env {
                name: "POSTGRES_URL".into()
            }
        );
    }

    #[test]
    fn other_schemes_are_accepted_generically() {
        let r = Reference::parse("vault+kv2:secret/data/app#password").unwrap();
        assert_eq!(r.scheme(), "vault+kv2");
        assert_eq!(r.to_string(), "vault+kv2:secret/data/app#password");
        assert!(Reference::parse("aws-sm:arn:aws:secretsmanager:eu-west-1:1:secret:x").is_ok());
    }

    #[test]
    fn strict_where_the_scheme_is_known() {
        for bad in [
            "POSTGRES_URL",
            "",
            ":x",
            "GitHub:a/b#C",
            "github:acme/web",
            "github:acme#X",
            "github:-acme/web#X",
            "github:ac--me/web#X",
            "github:acme/../#X",
            "github:acme/web#GITHUB_TOKEN",
            "github:acme/web#github_token",
            "github:acme/web#1X",
            "github:acme/web#X-Y",
            "github:acme/we b#X",
            "gcp:my-project/secrets/s",
            "gcp:projects/p/secrets/s",
            "gcp:projects/Project-1/secrets/s",
            "gcp:projects/my-project-/secrets/s",
            "gcp:projects/my-project/secrets/s/versions/1",
            "gcp:projects/my-project/secrets/s.s",
            "env:",
            "env:1X",
            "env:A-B",
            "vault:",
            "vault:a b",
            "x y:z",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
        assert!(Reference::parse(&format!("x:{}", "a".repeat(1100))).is_err());
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "github:o/r.x#N_1",
            "gcp:projects/abcdef/secrets/S_1",
            "env:_X",
            "s3:bucket/key",
        ] {
            let r = Reference::parse(text).unwrap();
            assert_eq!(r.to_string(), text);
            assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        }
    }

    #[test]
    fn errors_do_not_echo() {
        let e = Reference::parse("github:hunter2").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
