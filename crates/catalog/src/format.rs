//! Catalog files: TOML (the native form), the same shape in JSON, and seed 000's JSON.
//!
//! ```toml
//! [tiers.local_dev]
//! core = true              # the core server itself; only core tiers `serve`
//!
//! [tiers.desktop]
//! core = false
//!
//! [services.web]
//! tiers = ["desktop", "local_dev"]   # optional; without it, every declared tier
//!
//! [secrets.postgres_connection]
//! class = "infrastructure"           # infrastructure | service | user (optional)
//! owner = "platform team"            # optional free text
//! rotate_every = "90d"               # optional: 30m, 12h, 90d, 2w (default 90d)
//! description = "The app's database" # optional
//!
//! [secrets.postgres_connection.tiers.local_dev]
//! strategy = "serve"                 # [template = "..."]: how its value is made
//!
//! [secrets.postgres_connection.tiers.desktop]
//! class = "service"                  # the class on this tier, if not the secret's
//! strategy = "generate"
//! template = "file://{{USER_DATA}}/app.db"
//!
//! [secrets.openrouter_key.tiers.desktop]
//! strategy = "prompt"
//! label = "OpenRouter API key"       # required
//! help = "From openrouter.ai/keys"   # the rest optional
//! kind = "password"                  # text | password | url | email | number
//! pattern = "sk-or-[A-Za-z0-9-]+"    # the whole answer must match
//! min = 20                           # a number's value, else the length
//! max = 200
//! optional = false
//!
//! [secrets.telegram_token.tiers.cloud]
//! strategy = "delegate"
//! ref = "github:acme/bot#TELEGRAM_TOKEN"
//! present = true                     # the provider holds it (default false)
//!
//! # strategy = "strip" takes no other field.
//! ```
//!
//! Unknown fields are refused (a typo must not silently drop a rule). A `value` beside a
//! secret's fields is refused unless the caller allows values ([`LoadOptions`]); then it is
//! returned apart from the catalog, zeroizing. In JSON the same shape is an object with
//! `tiers`, `services` and `secrets`; seed 000's shape is recognized by its `secret_id`
//! (see [`crate::seed`]).
//!
//! An export is canonical: names sorted, fields in a fixed order, `core` always written,
//! `rotate_every` only when not the default, no values. Loading an export gives the same
//! catalog, and exporting that gives the same bytes.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::catalog::{Catalog, check_secret, check_service, check_tier};
use crate::error::{DeclError, FieldError, LoadError, Located, Refusal};
use crate::model::{
    Class, Pattern, PromptKind, PromptSpec, SecretMeta, Service, Strategy, Tier, TierPolicy,
};
use crate::period::Period;
use crate::reference::Reference;
use crate::seed;
use crate::template::Template;

/// Largest catalog file, in bytes (the most a ctl reply body carries, too).
pub const MAX_CATALOG_LEN: usize = 64 << 20;

/// The form of a catalog file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    /// TOML, the native form.
    Toml,
    /// JSON: the TOML shape, or seed 000's.
    Json,
}

impl Format {
    /// The format a file's extension names (`toml`, `json`).
    pub fn from_extension(ext: &str) -> Option<Format> {
        match ext {
            "toml" => Some(Format::Toml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// How to load a catalog file.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct LoadOptions {
    /// Accept `value`s (`--with-values`), returned in [`Loaded::values`].
    pub allow_values: bool,
}

/// A loaded catalog file.
#[derive(Debug)]
pub struct Loaded {
    /// Its declarations, every rule checked.
    pub catalog: Catalog,
    /// The values it carried (only when allowed), for the caller to store.
    pub values: BTreeMap<String, SecretValue>,
}

/// A secret value read from a catalog file: zeroized on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    /// The value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue({} bytes)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SecretValue, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

/// Takes a string and nothing else, and never says what it got (serde's own message would
/// quote a number or a string given in the wrong place).
struct ValueVisitor;

const VALUE_IS_TEXT: &str = "a `value` is a string";

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = SecretValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretValue, E> {
        Ok(SecretValue(Zeroizing::new(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<SecretValue, E> {
        Ok(SecretValue(Zeroizing::new(v)))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretValue, E> {
        Err(E::custom(VALUE_IS_TEXT))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretValue, E> {
        Err(E::custom(VALUE_IS_TEXT))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretValue, E> {
        Err(E::custom(VALUE_IS_TEXT))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretValue, E> {
        Err(E::custom(VALUE_IS_TEXT))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<SecretValue, E> {
        Err(E::custom(VALUE_IS_TEXT))
    }

    fn visit_unit<E: de::Error>(self) -> Result<SecretValue, E> {
        Err(E::custom(VALUE_IS_TEXT))
    }

    fn visit_none<E: de::Error>(self) -> Result<SecretValue, E> {
        Err(E::custom(VALUE_IS_TEXT))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<SecretValue, A::Error> {
        Err(de::Error::custom(VALUE_IS_TEXT))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<SecretValue, A::Error> {
        Err(de::Error::custom(VALUE_IS_TEXT))
    }
}

/// Deserializes a map, refusing a key given twice (JSON would otherwise keep the last).
pub(crate) fn unique<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Unique<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for Unique<V> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a table of names")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                if out.contains_key(&key) {
                    return Err(de::Error::custom("a name appears twice in one table"));
                }
                let value = map.next_value()?;
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Unique(std::marker::PhantomData))
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(
        default,
        deserialize_with = "unique",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    tiers: BTreeMap<String, Tier>,
    #[serde(
        default,
        deserialize_with = "unique",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    services: BTreeMap<String, RawService>,
    #[serde(
        default,
        deserialize_with = "unique",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    secrets: BTreeMap<String, RawSecret>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawService {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tiers: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    class: Option<Class>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotate_every: Option<Period>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default, skip_serializing)]
    value: Option<SecretValue>,
    #[serde(
        default,
        deserialize_with = "unique",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    tiers: BTreeMap<String, RawPolicy>,
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum StrategyName {
    Serve,
    Strip,
    Generate,
    Prompt,
    Delegate,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    class: Option<Class>,
    strategy: StrategyName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    template: Option<Template>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    help: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<PromptKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pattern: Option<Pattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    optional: Option<bool>,
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<Reference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    present: Option<bool>,
}

impl RawPolicy {
    fn from_policy(policy: &TierPolicy) -> RawPolicy {
        let mut raw = RawPolicy {
            class: policy.class,
            strategy: StrategyName::Strip,
            template: None,
            label: None,
            help: None,
            kind: None,
            pattern: None,
            min: None,
            max: None,
            optional: None,
            reference: None,
            present: None,
        };
        match &policy.strategy {
            Strategy::Serve { template } => {
                raw.strategy = StrategyName::Serve;
                raw.template.clone_from(template);
            }
            Strategy::Strip => {}
            Strategy::Generate { template } => {
                raw.strategy = StrategyName::Generate;
                raw.template = Some(template.clone());
            }
            Strategy::Prompt(spec) => {
                raw.strategy = StrategyName::Prompt;
                raw.label = Some(spec.label.clone());
                raw.help.clone_from(&spec.help);
                raw.kind = Some(spec.kind);
                raw.pattern.clone_from(&spec.pattern);
                raw.min = spec.min;
                raw.max = spec.max;
                raw.optional = Some(spec.optional);
            }
            Strategy::Delegate { reference, present } => {
                raw.strategy = StrategyName::Delegate;
                raw.reference = Some(reference.clone());
                raw.present = Some(*present);
            }
        }
        raw
    }

    /// The policy, if the fields go with the strategy.
    fn into_policy(self) -> Result<TierPolicy, (&'static str, FieldError)> {
        let prompt_fields = [
            ("label", self.label.is_some()),
            ("help", self.help.is_some()),
            ("kind", self.kind.is_some()),
            ("pattern", self.pattern.is_some()),
            ("min", self.min.is_some()),
            ("max", self.max.is_some()),
            ("optional", self.optional.is_some()),
        ];
        let delegate_fields = [
            ("ref", self.reference.is_some()),
            ("present", self.present.is_some()),
        ];
        let misplaced = |allowed: &[&str]| -> Result<(), (&'static str, FieldError)> {
            let template = [("template", self.template.is_some())];
            for (field, given) in template
                .iter()
                .chain(&prompt_fields)
                .chain(&delegate_fields)
            {
                if *given && !allowed.contains(field) {
                    return Err((field, FieldError::Shape(misplaced_reason(field))));
                }
            }
            Ok(())
        };
        let strategy = match self.strategy {
            StrategyName::Serve => {
                misplaced(&["template"])?;
                Strategy::Serve {
                    template: self.template,
                }
            }
            StrategyName::Strip => {
                misplaced(&[])?;
                Strategy::Strip
            }
            StrategyName::Generate => {
                misplaced(&["template"])?;
                let template = self.template.ok_or((
                    "template",
                    FieldError::Shape("`strategy = \"generate\"` needs a `template`"),
                ))?;
                Strategy::Generate { template }
            }
            StrategyName::Prompt => {
                misplaced(&["label", "help", "kind", "pattern", "min", "max", "optional"])?;
                let label = self.label.ok_or((
                    "label",
                    FieldError::Shape("`strategy = \"prompt\"` needs a `label`"),
                ))?;
                Strategy::Prompt(PromptSpec {
                    label,
                    help: self.help,
                    kind: self.kind.unwrap_or_default(),
                    pattern: self.pattern,
                    min: self.min,
                    max: self.max,
                    optional: self.optional.unwrap_or(false),
                })
            }
            StrategyName::Delegate => {
                misplaced(&["ref", "present"])?;
                let reference = self.reference.ok_or((
                    "ref",
                    FieldError::Shape("`strategy = \"delegate\"` needs a `ref`"),
                ))?;
                Strategy::Delegate {
                    reference,
                    present: self.present.unwrap_or(false),
                }
            }
        };
        Ok(TierPolicy {
            class: self.class,
            strategy,
        })
    }
}

fn misplaced_reason(field: &str) -> &'static str {
    match field {
        "template" => "`template` goes with strategy serve or generate",
        "ref" | "present" => "`ref` and `present` go with strategy delegate",
        _ => {
            "`label`, `help`, `kind`, `pattern`, `min`, `max` and `optional` go with strategy prompt"
        }
    }
}

impl RawSecret {
    fn from_meta(meta: &SecretMeta) -> RawSecret {
        RawSecret {
            class: meta.class,
            owner: meta.owner.clone(),
            rotate_every: (meta.rotate_every != Period::DEFAULT).then_some(meta.rotate_every),
            description: meta.description.clone(),
            value: None,
            tiers: meta
                .tiers
                .iter()
                .map(|(t, p)| (t.clone(), RawPolicy::from_policy(p)))
                .collect(),
        }
    }
}

/// Where a declaration is in a file: the keys down to its table.
pub(crate) type Path = Vec<String>;

/// Declarations that came from a file and the path of each refused one, checked together.
pub(crate) struct Checked {
    pub catalog: Catalog,
    pub values: BTreeMap<String, SecretValue>,
    pub errors: Vec<(Path, DeclError)>,
}

/// Checks declarations from a file: every rule, every value, each error with its path.
pub(crate) fn check_parts(
    tiers: BTreeMap<String, Tier>,
    services: BTreeMap<String, Service>,
    secrets: BTreeMap<String, SecretMeta>,
    values: BTreeMap<String, SecretValue>,
    mut errors: Vec<(Path, DeclError)>,
    options: LoadOptions,
) -> Checked {
    let catalog = Catalog::from_parts_unchecked(tiers, services, secrets);
    errors.extend(catalog.limits().into_iter().map(|e| (Vec::new(), e)));
    for (name, tier) in catalog.tiers() {
        if let Some(e) = check_tier(name, tier) {
            errors.push((path(&["tiers", name]), e));
        }
    }
    for (name, service) in catalog.services() {
        for e in check_service(catalog.tiers(), name, service) {
            errors.push((path(&["services", name]), e));
        }
    }
    for (name, meta) in catalog.secrets() {
        for (tier, e) in check_secret(catalog.tiers(), name, meta) {
            let mut p = match &tier {
                Some(t) => path(&["secrets", name, "tiers", t]),
                None => path(&["secrets", name]),
            };
            if let DeclError::Field { field, .. } = &e {
                p.push((*field).to_string());
            }
            errors.push((p, e));
        }
    }
    for (name, value) in &values {
        let p = path(&["secrets", name, "value"]);
        if !options.allow_values {
            errors.push((
                p,
                DeclError::ValueNotAllowed {
                    secret: name.clone(),
                },
            ));
        } else if value.expose().len() > model::MAX_VALUE_LEN {
            errors.push((
                p,
                DeclError::ValueTooLarge {
                    secret: name.clone(),
                    limit: model::MAX_VALUE_LEN,
                },
            ));
        }
    }
    Checked {
        catalog,
        values,
        errors,
    }
}

pub(crate) fn path(keys: &[&str]) -> Path {
    keys.iter().map(|k| (*k).to_string()).collect()
}

/// Loads a catalog file.
///
/// # Errors
/// [`LoadError::TooLarge`] above [`MAX_CATALOG_LEN`]; [`LoadError::Syntax`] with the line
/// and column of the first fault of form; [`LoadError::Refused`] listing every
/// declaration the catalog refuses, each at its line (TOML).
pub fn load(src: &str, format: Format, options: LoadOptions) -> Result<Loaded, LoadError> {
    if src.len() > MAX_CATALOG_LEN {
        return Err(LoadError::TooLarge {
            limit: MAX_CATALOG_LEN,
        });
    }
    let checked = match format {
        Format::Toml => {
            let raw: RawCatalog = toml::from_str(src).map_err(|e| toml_error(src, &e))?;
            from_raw(raw, options)
        }
        Format::Json => {
            if seed::is_seed_form(src) {
                seed::load(src, options)?
            } else {
                let raw: RawCatalog = serde_json::from_str(src).map_err(|e| json_error(&e))?;
                from_raw(raw, options)
            }
        }
    };
    if checked.errors.is_empty() {
        return Ok(Loaded {
            catalog: checked.catalog,
            values: checked.values,
        });
    }
    let lines = match format {
        Format::Toml => toml_lines(src, &checked.errors),
        Format::Json => vec![None; checked.errors.len()],
    };
    Err(LoadError::Refused(Refusal {
        errors: checked
            .errors
            .into_iter()
            .zip(lines)
            .map(|((_, error), line)| Located { line, error })
            .collect(),
    }))
}

fn from_raw(raw: RawCatalog, options: LoadOptions) -> Checked {
    let mut errors = Vec::new();
    let mut values = BTreeMap::new();
    let services = raw
        .services
        .into_iter()
        .map(|(name, s)| (name, Service { tiers: s.tiers }))
        .collect();
    let mut secrets = BTreeMap::new();
    for (name, raw_secret) in raw.secrets {
        if let Some(v) = raw_secret.value {
            values.insert(name.clone(), v);
        }
        let mut meta = SecretMeta {
            class: raw_secret.class,
            owner: raw_secret.owner,
            rotate_every: raw_secret.rotate_every.unwrap_or_default(),
            description: raw_secret.description,
            tiers: BTreeMap::new(),
        };
        for (tier, raw_policy) in raw_secret.tiers {
            match raw_policy.into_policy() {
                Ok(policy) => {
                    meta.tiers.insert(tier, policy);
                }
                Err((field, source)) => errors.push((
                    path(&["secrets", &name, "tiers", &tier]),
                    DeclError::Field {
                        secret: name.clone(),
                        tier: Some(tier.clone()),
                        field,
                        source: Box::new(source),
                    },
                )),
            }
        }
        secrets.insert(name, meta);
    }
    check_parts(raw.tiers, services, secrets, values, errors, options)
}

/// The 1-based line of each error's declaration in a TOML file.
///
/// A file of 16 MiB can have a refused declaration on every few lines: each is found by
/// key lookups and a binary search of the line starts, never by a scan of the file or of
/// a table (that made a file of 16,000 refusals take seconds, and a larger one hours).
fn toml_lines(src: &str, errors: &[(Path, DeclError)]) -> Vec<Option<usize>> {
    let Ok(doc) = toml::de::DeTable::parse(src) else {
        return vec![None; errors.len()];
    };
    let newlines: Vec<usize> = src
        .bytes()
        .enumerate()
        .filter_map(|(i, b)| (b == b'\n').then_some(i))
        .collect();
    errors
        .iter()
        .map(|(path, _)| {
            let mut table = doc.get_ref();
            let mut offset = None;
            // As deep as the path is found: a field left out (a prompt without `label`) is
            // placed at its table.
            for key in path {
                let Some((k, v)) = table.get_key_value(key.as_str()) else {
                    break;
                };
                offset = Some(k.span().start);
                match v.get_ref() {
                    toml::de::DeValue::Table(t) => table = t,
                    _ => break,
                }
            }
            // The newlines before the offset, plus one.
            offset.map(|o| newlines.partition_point(|&n| n < o) + 1)
        })
        .collect()
}

fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn column_of(src: &str, offset: usize) -> usize {
    let offset = offset.min(src.len());
    let start = src[..offset].rfind('\n').map_or(0, |i| i + 1);
    src.get(start..offset).map_or(1, |s| s.chars().count() + 1)
}

/// A TOML error without the snippet of the file toml would show (it could be a value).
fn toml_error(src: &str, e: &toml::de::Error) -> LoadError {
    let (line, column) = match e.span() {
        Some(span) => (
            Some(line_of(src, span.start)),
            Some(column_of(src, span.start)),
        ),
        None => (None, None),
    };
    LoadError::Syntax {
        format: "TOML",
        line,
        column,
        message: without_input(e.message().trim_end()),
    }
}

/// serde's own messages quote what the file gave where something else was expected
/// (`invalid type: string "postgres://app:pw@db", expected struct RawSecret`, `unknown
/// variant `sk-live-...``): a value pasted in the wrong place, a `NAME = "VALUE"` table,
/// would be shown in the error. What was given is left out, and what was expected kept;
/// the line and column say where.
fn without_input(message: &str) -> String {
    const EXPECTED: &str = ", expected ";
    for prefix in ["invalid type: ", "invalid value: "] {
        let Some(rest) = message.strip_prefix(prefix) else {
            continue;
        };
        // What was expected comes from the catalog's types, never from the file; what
        // was given comes before it.
        let (given, expected) = match rest.rfind(EXPECTED) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let kind = [
            ("string", "a string"),
            ("integer", "an integer"),
            ("floating point", "a number"),
            ("boolean", "a boolean"),
            ("character", "a character"),
        ]
        .iter()
        .find(|(word, _)| given.starts_with(word))
        .map(|(_, kind)| *kind);
        // serde's other kinds (`sequence`, `map`, `unit value`, ...) carry no input.
        let fixed = [
            "byte array",
            "unit value",
            "Option value",
            "newtype struct",
            "sequence",
            "map",
            "enum",
            "unit variant",
            "newtype variant",
            "tuple variant",
            "struct variant",
        ];
        let kind = kind.unwrap_or(if fixed.contains(&given) {
            given
        } else {
            "something else"
        });
        return format!("{prefix}{kind}{expected}");
    }
    for (prefix, what, ends) in [
        (
            "unknown variant `",
            "unknown variant",
            ["`, expected ", "`, there are no variants"],
        ),
        (
            "unknown field `",
            "unknown field",
            ["`, expected ", "`, there are no fields"],
        ),
    ] {
        let Some(rest) = message.strip_prefix(prefix) else {
            continue;
        };
        // The name given is the file's and could hold anything, those endings included;
        // the list after it is the catalog's, and holds neither.
        return match ends
            .iter()
            .filter_map(|end| rest.rfind(end).map(|i| i + 1))
            .max()
        {
            Some(i) => format!("{what}{}", &rest[i..]),
            None => what.to_string(),
        };
    }
    message.to_string()
}

pub(crate) fn json_error(e: &serde_json::Error) -> LoadError {
    let text = e.to_string();
    // serde_json appends " at line L column C"; it is given apart.
    let message = match text.rfind(" at line ") {
        Some(i) => without_input(&text[..i]),
        None => without_input(&text),
    };
    LoadError::Syntax {
        format: "JSON",
        line: (e.line() > 0).then_some(e.line()),
        column: (e.column() > 0).then_some(e.column()),
        message,
    }
}

impl Catalog {
    fn to_raw(&self) -> RawCatalog {
        RawCatalog {
            tiers: self.tiers().clone(),
            services: self
                .services()
                .iter()
                .map(|(n, s)| {
                    (
                        n.clone(),
                        RawService {
                            tiers: s.tiers.clone(),
                        },
                    )
                })
                .collect(),
            secrets: self
                .secrets()
                .iter()
                .map(|(n, m)| (n.clone(), RawSecret::from_meta(m)))
                .collect(),
        }
    }

    /// The catalog as canonical TOML.
    pub fn to_toml(&self) -> String {
        // Every type here is a table of strings, numbers, booleans and string lists, which
        // TOML always represents.
        toml::to_string(&self.to_raw()).unwrap_or_else(|e| format!("# export failed: {e}\n"))
    }

    /// The catalog as canonical JSON (pretty, ending in a newline).
    pub fn to_json(&self) -> String {
        let mut out = serde_json::to_string_pretty(&self.to_raw())
            .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()));
        out.push('\n');
        out
    }

    /// The catalog in `format`.
    pub fn export(&self, format: Format) -> String {
        match format {
            Format::Toml => self.to_toml(),
            Format::Json => self.to_json(),
        }
    }
}

impl Serialize for SecretMeta {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RawSecret::from_meta(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for SecretMeta {
    /// The shape of one `[secrets.NAME]` table, field-level checks only (a store reloading
    /// one record; the catalog's rules are [`Catalog::validate`]'s). A `value` is refused.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SecretMeta, D::Error> {
        let raw = RawSecret::deserialize(d)?;
        if raw.value.is_some() {
            return Err(de::Error::custom("a secret's metadata holds no `value`"));
        }
        let mut tiers = BTreeMap::new();
        for (tier, raw_policy) in raw.tiers {
            let policy = raw_policy
                .into_policy()
                .map_err(|(field, e)| de::Error::custom(format!("{field}: {e}")))?;
            tiers.insert(tier, policy);
        }
        Ok(SecretMeta {
            class: raw.class,
            owner: raw.owner,
            rotate_every: raw.rotate_every.unwrap_or_default(),
            description: raw.description,
            tiers,
        })
    }
}

impl Serialize for TierPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RawPolicy::from_policy(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for TierPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TierPolicy, D::Error> {
        RawPolicy::deserialize(d)?
            .into_policy()
            .map_err(|(field, e)| de::Error::custom(format!("{field}: {e}")))
    }
}

impl Serialize for Service {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RawService {
            tiers: self.tiers.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Service {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Service, D::Error> {
        Ok(Service {
            tiers: RawService::deserialize(d)?.tiers,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests;
