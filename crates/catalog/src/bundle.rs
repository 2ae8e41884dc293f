//! Bundles: what a deployment outside the core server receives for a service on a tier.
//!
//! A bundle is made from the plan ([`issue`]): for each secret of the service's manifest,
//! a value generated for this deployment (`generate`), a prompt spec (`prompt`), a
//! reference and whether the provider holds it (`delegate`), or only its name (`strip`).
//! It never holds a stored value: nothing here reads one, and infrastructure is stripped
//! by the class rule whatever the catalog declares. A plan with a problem (a strategy
//! missing, a secret that does not exist, a strategy that breaks a rule) gives no bundle;
//! a delegated reference not yet present does not stop one (`delegated.json` says so).
//!
//! # The `json` form
//!
//! One document, what the server answers a bundle request with (ctl and HTTP alike):
//!
//! ```json
//! {
//!   "format": "srv-secrets-bundle/1",
//!   "service": "web", "tier": "desktop", "deployment": "acme-laptop-7",
//!   "bundle": 1, "issued": 1767225600,
//!   "manifest": [
//!     { "secret": "jwt_key", "class": "service", "action": "generate", "random": true },
//!     { "secret": "app_db", "class": "service", "action": "generate",
//!       "target_placeholders": ["USER_DATA"], "random": false },
//!     { "secret": "openrouter_key", "class": "user", "action": "prompt", "optional": false },
//!     { "secret": "tg_token", "class": "user", "action": "delegate",
//!       "ref": "github:acme/bot#TELEGRAM_TOKEN", "present": false },
//!     { "secret": "db_root", "class": "infrastructure", "action": "strip" }
//!   ],
//!   "values": { "app_db": "ZmlsZTovL3t7VVNFUl9EQVRBfX0vYXBwLmRi", "jwt_key": "..." },
//!   "prompts": [ { "secret": "openrouter_key", "label": "OpenRouter API key",
//!                  "kind": "password", "optional": false } ],
//!   "delegated": [ { "secret": "tg_token", "ref": "github:acme/bot#TELEGRAM_TOKEN",
//!                    "scheme": "github", "present": false } ]
//! }
//! ```
//!
//! `bundle` counts the bundles issued to this deployment of the service on the tier (2 or
//! more: `--replace` issued it anew); `issued` is unix seconds. Values are base64 (RFC
//! 4648, padded), each the exact bytes. The `dir` form splits the same document into
//! `values/NAME`, `manifest.json` (`secrets` is `manifest` above), `prompts.json` and
//! `delegated.json`, each with the header fields; the `dotenv` form puts the values in
//! `values.env` ([`Bundle::dotenv`]) beside the same three files.
//!
//! Values live in zeroizing buffers ([`GeneratedValue`]); [`Bundle::to_json`] and
//! [`Bundle::dotenv`] size their output before writing it, so that no copy of a value is
//! left behind by a buffer that grew.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::catalog::Catalog;
use crate::finding::{Finding, FindingKind};
use crate::model::{Class, PromptSpec, Strategy};
use crate::plan::{Action, Store, plan};
use crate::template::{BASE64, RenderContext, TemplateError, push_base64};

/// The `format` of a bundle document this build writes and reads.
pub const BUNDLE_FORMAT: &str = "srv-secrets-bundle/1";

/// Whether `id` may name a deployment: the name rule of secrets and services
/// (`[A-Za-z0-9._-]{1,128}`, not `.` or `..`), since it becomes part of store keys and
/// of the names a deployer gives files.
pub fn is_valid_deployment(id: &str) -> bool {
    model::is_valid_name(id)
}

/// A value generated for one deployment: zeroized on drop, never printed (`Debug` shows
/// its length), base64 in JSON.
#[derive(Clone)]
pub struct GeneratedValue(Zeroizing<Vec<u8>>);

impl GeneratedValue {
    /// The value from its bytes.
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> GeneratedValue {
        GeneratedValue(bytes)
    }

    /// The bytes. Named so that every place that handles a value in the clear says so.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Zeroizing<String>> for GeneratedValue {
    fn from(mut text: Zeroizing<String>) -> GeneratedValue {
        // The buffer moves; the emptied String left behind holds nothing to wipe.
        GeneratedValue(Zeroizing::new(std::mem::take(&mut *text).into_bytes()))
    }
}

impl fmt::Debug for GeneratedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GeneratedValue({} bytes)", self.0.len())
    }
}

impl PartialEq for GeneratedValue {
    /// In constant time for values of equal length.
    fn eq(&self, other: &GeneratedValue) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(other.0.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl Eq for GeneratedValue {}

impl Serialize for GeneratedValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut text = Zeroizing::new(String::with_capacity(self.0.len().div_ceil(3) * 4));
        push_base64(&mut text, &self.0, BASE64, true);
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for GeneratedValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<GeneratedValue, D::Error> {
        struct Base64;
        impl serde::de::Visitor<'_> for Base64 {
            type Value = GeneratedValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value in base64")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<GeneratedValue, E> {
                decode_base64(text.as_bytes())
                    .map(GeneratedValue)
                    .ok_or_else(|| E::custom("a value that is not base64 (RFC 4648, padded)"))
            }
        }
        d.deserialize_str(Base64)
    }
}

/// Padded base64 (RFC 4648) into a buffer of the exact size; `None` if it is not.
fn decode_base64(text: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let pad = text.iter().rev().take_while(|&&b| b == b'=').count();
    if pad > 2 {
        return None;
    }
    let sym = |b: u8| -> Option<u32> {
        Some(match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() / 4 * 3 - pad));
    for (i, quad) in text.chunks(4).enumerate() {
        let last = (i + 1) * 4 == text.len();
        let keep = if last { 3 - pad } else { 3 };
        let mut n = 0u32;
        for (j, &b) in quad.iter().enumerate() {
            let v = if last && j >= 4 - pad { 0 } else { sym(b)? };
            n = n << 6 | v;
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        // Bits a padded quad does not use must be zero: one encoding per value.
        if bytes[keep..].iter().any(|&b| b != 0) {
            return None;
        }
        out.extend_from_slice(&bytes[..keep]);
    }
    Some(out)
}

/// What one secret of the manifest is in the bundle.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Shipped {
    /// A value generated for this deployment, in `values`.
    Generate {
        /// The placeholders the target resolves in it (`USER_DATA`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        target_placeholders: Vec<String>,
        /// Whether it was drawn at random (so unique to this deployment).
        random: bool,
    },
    /// Asked of the user at first run, as `prompts` says.
    Prompt {
        /// Whether the user may leave it empty.
        optional: bool,
    },
    /// A provider holds it, as `delegated` says.
    Delegate {
        /// Where it lives.
        #[serde(rename = "ref")]
        reference: String,
        /// Whether the provider holds it.
        present: bool,
    },
    /// Never leaves the core server: named, nothing else.
    Strip,
}

/// One secret of the service's manifest, and what the bundle holds of it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// The secret.
    pub secret: String,
    /// Its class on the tier.
    pub class: Option<Class>,
    /// What the bundle holds of it.
    #[serde(flatten)]
    pub shipped: Shipped,
}

/// A first-run prompt: the secret it fills and what to ask.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PromptEntry {
    /// The secret whose value the answer is (`values/NAME`).
    pub secret: String,
    /// What to ask and how to check it.
    #[serde(flatten)]
    pub spec: PromptSpec,
}

/// A delegated secret: where it lives, whether it is there.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DelegateEntry {
    /// The secret.
    pub secret: String,
    /// The reference (`github:acme/bot#TELEGRAM_TOKEN`).
    #[serde(rename = "ref")]
    pub reference: String,
    /// Its scheme (`github`, `gcp`, `env`, ...).
    pub scheme: String,
    /// Whether the provider holds it (marked by the operator).
    pub present: bool,
}

/// A bundle: what a deployment outside the core server receives (see the module
/// documentation for its JSON).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Bundle {
    /// [`BUNDLE_FORMAT`].
    pub format: String,
    /// The service.
    pub service: String,
    /// The tier.
    pub tier: String,
    /// The deployment it was issued to.
    pub deployment: String,
    /// Which bundle of this deployment (1, then 2 after a `--replace`, ...).
    pub bundle: u64,
    /// When it was issued, unix seconds.
    pub issued: u64,
    /// Every secret of the manifest, in manifest order.
    pub manifest: Vec<ManifestEntry>,
    /// The values generated for it, by secret.
    pub values: BTreeMap<String, GeneratedValue>,
    /// The prompts, in manifest order.
    pub prompts: Vec<PromptEntry>,
    /// The delegated secrets, in manifest order.
    pub delegated: Vec<DelegateEntry>,
}

/// A bundle's header, as each file of the `dir` form starts.
#[derive(Serialize)]
struct Header<'a> {
    format: &'a str,
    service: &'a str,
    tier: &'a str,
    deployment: &'a str,
    bundle: u64,
    issued: u64,
}

/// `prompts.json`, as `deploy prompt --spec` reads it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PromptsFile {
    /// The prompts.
    pub prompts: Vec<PromptEntry>,
}

impl Bundle {
    fn header(&self) -> Header<'_> {
        Header {
            format: &self.format,
            service: &self.service,
            tier: &self.tier,
            deployment: &self.deployment,
            bundle: self.bundle,
            issued: self.issued,
        }
    }

    /// The `json` form, pretty, ending in a newline, in a buffer sized before it is
    /// written (it holds the values).
    pub fn to_json(&self) -> Zeroizing<Vec<u8>> {
        sized_json(self)
    }

    /// Reads the `json` form.
    ///
    /// # Errors
    /// What is wrong with it (never a value): not JSON, not a bundle, another format.
    pub fn from_json(bytes: &[u8]) -> Result<Bundle, String> {
        let bundle: Bundle =
            serde_json::from_slice(bytes).map_err(|e| format!("not a bundle: {e}"))?;
        if bundle.format != BUNDLE_FORMAT {
            return Err(format!(
                "a bundle of format {:?}; this build reads {BUNDLE_FORMAT}",
                bundle.format
            ));
        }
        Ok(bundle)
    }

    /// `manifest.json` of the `dir` form: the header and every secret (no values).
    pub fn manifest_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct File<'a> {
            #[serde(flatten)]
            header: Header<'a>,
            secrets: &'a [ManifestEntry],
        }
        pretty(&File {
            header: self.header(),
            secrets: &self.manifest,
        })
    }

    /// `prompts.json` of the `dir` form: the header and the prompts.
    pub fn prompts_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct File<'a> {
            #[serde(flatten)]
            header: Header<'a>,
            prompts: &'a [PromptEntry],
        }
        pretty(&File {
            header: self.header(),
            prompts: &self.prompts,
        })
    }

    /// `delegated.json` of the `dir` form: the header and the delegated secrets.
    pub fn delegated_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct File<'a> {
            #[serde(flatten)]
            header: Header<'a>,
            delegated: &'a [DelegateEntry],
        }
        pretty(&File {
            header: self.header(),
            delegated: &self.delegated,
        })
    }

    /// The values as `NAME=VALUE` lines (`values.env` of the `dotenv` form), sorted by
    /// name. A value is single-quoted, byte for byte, unless it holds a `'`; then it is
    /// double-quoted with `\\`, `\"`, `\$` and `` \` `` escaped (line breaks as they are). Both read back
    /// exactly with `deploy secret import --dotenv` and with a POSIX shell's `set -a; . FILE`.
    ///
    /// # Errors
    /// The first secret whose name is not a variable name (`[A-Za-z_][A-Za-z0-9_]*`).
    pub fn dotenv(&self) -> Result<Zeroizing<Vec<u8>>, String> {
        let mut len = 0;
        for (name, value) in &self.values {
            if !is_env_name(name) {
                return Err(format!(
                    "secret {name} is not a variable name ([A-Za-z_][A-Za-z0-9_]*), so it \
                     cannot be a dotenv line; use --format dir or json"
                ));
            }
            len += name.len() + 2 + quoted_len(value.expose());
        }
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        for (name, value) in &self.values {
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
            push_quoted(&mut out, value.expose());
            out.push(b'\n');
        }
        debug_assert_eq!(out.len(), len);
        Ok(out)
    }
}

/// Whether `name` is a shell variable's name.
pub fn is_env_name(name: &str) -> bool {
    let b = name.as_bytes();
    matches!(b.first(), Some(b'A'..=b'Z' | b'a'..=b'z' | b'_'))
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

fn needs_double(value: &[u8]) -> bool {
    value.contains(&b'\'')
}

fn double_escape(b: u8) -> Option<&'static [u8]> {
    Some(match b {
        b'\\' => b"\\\\",
        b'"' => b"\\\"",
        b'$' => b"\\$",
        b'`' => b"\\`",
        // A newline or carriage return stays itself: a shell keeps `\n` inside double
        // quotes as two characters, and dotenv readers take a quoted line break as is.
        _ => return None,
    })
}

/// The length of `value` quoted, quotes included.
fn quoted_len(value: &[u8]) -> usize {
    if needs_double(value) {
        2 + value
            .iter()
            .map(|&b| double_escape(b).map_or(1, <[u8]>::len))
            .sum::<usize>()
    } else {
        value.len() + 2
    }
}

fn push_quoted(out: &mut Vec<u8>, value: &[u8]) {
    if needs_double(value) {
        out.push(b'"');
        for &b in value {
            match double_escape(b) {
                Some(e) => out.extend_from_slice(e),
                None => out.push(b),
            }
        }
        out.push(b'"');
    } else {
        out.push(b'\'');
        out.extend_from_slice(value);
        out.push(b'\'');
    }
}

fn pretty<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Counts what a serializer writes.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Pretty JSON and a newline, in a zeroizing buffer allocated once at its exact size: a
/// first pass counts the bytes, the second writes them.
pub fn sized_json<T: Serialize>(value: &T) -> Zeroizing<Vec<u8>> {
    let mut counter = Counter(0);
    // Maps with string keys and plain values: serializing them cannot fail.
    if serde_json::to_writer_pretty(&mut counter, value).is_err() {
        return Zeroizing::new(b"{}\n".to_vec());
    }
    let mut out = Zeroizing::new(Vec::with_capacity(counter.0 + 1));
    if serde_json::to_writer_pretty(&mut *out, value).is_err() {
        return Zeroizing::new(b"{}\n".to_vec());
    }
    out.push(b'\n');
    out
}

/// What a bundle is issued for.
#[derive(Clone, Copy, Debug)]
pub struct IssueRequest<'a> {
    /// The service, whose manifest is bundled.
    pub service: &'a str,
    /// The tier.
    pub tier: &'a str,
    /// The deployment's id.
    pub deployment: &'a str,
    /// Which bundle of the deployment this is (1 for the first).
    pub bundle: u64,
    /// When, unix seconds.
    pub issued: u64,
}

/// Why no bundle was issued.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BundleError {
    /// The tier is core: its services read the core server itself.
    CoreTier {
        /// The tier.
        tier: String,
    },
    /// A deployment id that breaks the name rule.
    DeploymentName,
    /// The plan has problems: each of them, never a value.
    Incomplete {
        /// The service.
        service: String,
        /// The tier.
        tier: String,
        /// Every problem that stops a bundle (a delegated reference not present does not).
        problems: Vec<Finding>,
    },
    /// A template could not be rendered.
    Template {
        /// The secret.
        secret: String,
        /// Why.
        error: TemplateError,
    },
    /// The tier is not declared.
    UnknownTier {
        /// The tier.
        tier: String,
    },
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::CoreTier { tier } => write!(
                f,
                "tier `{tier}` is core: its services read the core server, and a bundle is \
                 for a deployment outside it"
            ),
            BundleError::DeploymentName => f.write_str(
                "invalid deployment id; ids are 1 to 128 of A-Z a-z 0-9 . _ - (but not . or ..)",
            ),
            BundleError::Incomplete {
                service,
                tier,
                problems,
            } => {
                let ids: Vec<&str> = problems.iter().map(|p| p.id.as_str()).collect();
                write!(
                    f,
                    "the plan for service `{service}` on tier `{tier}` has {}, so no bundle \
                     was issued: {}; see them with: deploy secret plan --service {service} \
                     --tier {tier}",
                    if problems.len() == 1 {
                        "a problem".to_string()
                    } else {
                        format!("{} problems", problems.len())
                    },
                    ids.join(", ")
                )
            }
            BundleError::Template { secret, error } => {
                write!(f, "secret `{secret}`'s template: {error}")
            }
            BundleError::UnknownTier { tier } => write!(
                f,
                "no such tier `{tier}`; declare it with: deploy tier add {tier}"
            ),
        }
    }
}

impl std::error::Error for BundleError {}

impl BundleError {
    /// What is wrong in a fixed text of at most 80 bytes, naming nothing: for a ctl error.
    pub fn brief(&self) -> &'static str {
        match self {
            BundleError::CoreTier { .. } => {
                "a core tier reads the core server; bundles are for others"
            }
            BundleError::DeploymentName => {
                "invalid deployment id; ids are 1 to 128 of A-Za-z0-9._-"
            }
            BundleError::Incomplete { .. } => "the plan has problems; see: deploy secret plan",
            BundleError::Template { error, .. } => error.brief(),
            BundleError::UnknownTier { .. } => {
                "no such tier; declare it with: deploy tier add TIER"
            }
        }
    }
}

/// Issues a bundle for `request.service` on `request.tier`: plans its manifest, refuses a
/// plan with problems (a delegated reference not yet present is no problem here), and
/// renders a fresh value from each `generate` template with the deployment, service and
/// tier as its context. Reads no value: `store` says only which secrets have one.
///
/// # Errors
/// [`BundleError`]: an invalid deployment id, a tier not declared or core, the plan's
/// problems, a template that cannot be rendered.
pub fn issue<M: AsRef<str>>(
    catalog: &Catalog,
    manifest: &[M],
    store: &(impl Store + ?Sized),
    request: &IssueRequest<'_>,
) -> Result<Bundle, BundleError> {
    let IssueRequest {
        service,
        tier,
        deployment,
        ..
    } = *request;
    if !is_valid_deployment(deployment) {
        return Err(BundleError::DeploymentName);
    }
    match catalog.tier(tier) {
        None => {
            return Err(BundleError::UnknownTier {
                tier: tier.to_string(),
            });
        }
        Some(t) if t.core => {
            return Err(BundleError::CoreTier {
                tier: tier.to_string(),
            });
        }
        Some(_) => {}
    }
    let planned = plan(catalog, service, tier, manifest, store);
    let problems: Vec<Finding> = planned
        .problems
        .into_iter()
        .filter(|p| p.kind != FindingKind::NotPresent)
        .collect();
    if !problems.is_empty() {
        return Err(BundleError::Incomplete {
            service: service.to_string(),
            tier: tier.to_string(),
            problems,
        });
    }
    let context = RenderContext {
        deployment: Some(deployment),
        service: Some(service),
        tier: Some(tier),
    };
    let mut bundle = Bundle {
        format: BUNDLE_FORMAT.to_string(),
        service: service.to_string(),
        tier: tier.to_string(),
        deployment: deployment.to_string(),
        bundle: request.bundle,
        issued: request.issued,
        manifest: Vec::with_capacity(planned.entries.len()),
        values: BTreeMap::new(),
        prompts: Vec::new(),
        delegated: Vec::new(),
    };
    for entry in planned.entries {
        let secret = entry.secret;
        let shipped = match entry.action {
            Action::Generate {
                target_placeholders,
                random,
                ..
            } => {
                let policy = catalog.secret(&secret).and_then(|m| m.tiers.get(tier));
                match policy.map(|p| &p.strategy) {
                    Some(Strategy::Generate { template }) => {
                        let value =
                            template
                                .render(&context)
                                .map_err(|error| BundleError::Template {
                                    secret: secret.clone(),
                                    error,
                                })?;
                        bundle.values.insert(secret.clone(), value.into());
                        Shipped::Generate {
                            target_placeholders,
                            random,
                        }
                    }
                    // The plan said generate, from this very catalog: not reached.
                    _ => Shipped::Strip,
                }
            }
            Action::Prompt { prompt } => {
                let optional = prompt.optional;
                bundle.prompts.push(PromptEntry {
                    secret: secret.clone(),
                    spec: prompt,
                });
                Shipped::Prompt { optional }
            }
            Action::Delegate {
                reference,
                scheme,
                present,
            } => {
                bundle.delegated.push(DelegateEntry {
                    secret: secret.clone(),
                    reference: reference.clone(),
                    scheme,
                    present,
                });
                Shipped::Delegate { reference, present }
            }
            // A plan without problems on a tier that is not core has none of the others;
            // whatever they were, nothing of them leaves.
            Action::Strip | Action::Serve { .. } | Action::None | Action::Blocked { .. } => {
                Shipped::Strip
            }
        };
        bundle.manifest.push(ManifestEntry {
            secret,
            class: entry.class,
            shipped,
        });
    }
    Ok(bundle)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests;
