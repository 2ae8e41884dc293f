//! Templates: how a `generate` strategy makes a value, `{{...}}` placeholders in a string.
//!
//! ```text
//! template    = { literal | placeholder } ;
//! placeholder = "{{" ( made-here | at-target ) "}}" ;
//! made-here   = "random:" ( "hex" | "base64" | "base64url" ) ":" N     N random bytes
//!             | "password:" N [ ":" ALPHABET ]                          N characters
//!             | "uuid" | "deployment" | "service" | "tier" ;
//! at-target   = NAME [ ":" ARG ] ;       NAME = [A-Z][A-Z0-9_]*, ARG = [A-Za-z0-9_./-]+;
//!                                        ENV needs an ARG that is a variable name
//! literal     = any text without "{{" ;  a lone "{" or "}}" is literal
//! ```
//!
//! Lower-case placeholders are made here, when the template is rendered: random bytes from
//! the OS RNG, hex-encoded or base64 (`base64` is RFC 4648 with padding, `base64url` the
//! URL-safe alphabet without padding, as JWTs use it); a password of N characters drawn
//! without bias from ALPHABET (default `A-Z a-z 0-9`, which is safe inside URLs); a random
//! (version 4) UUID; and the deployment id, service and tier of the [`RenderContext`].
//! Upper-case ones are the target's to resolve (`{{USER_DATA}}`, `{{POSTGRES_URL}}`,
//! `{{ENV:HOME}}`) and are copied into the value verbatim, braces and all.
//!
//! Bounds, checked when the template is declared: a random placeholder makes
//! [`MIN_RANDOM_BYTES`] to [`MAX_RANDOM_BYTES`] bytes and a password carries at least
//! [`MIN_SECRET_BITS`] bits (fewer can be guessed offline, and a template exists to make
//! secrets: an id that need not be secret is `{{uuid}}`), at most [`MAX_PASSWORD_LEN`]
//! characters; a template is at most [`MAX_TEMPLATE_LEN`] bytes with at most
//! [`MAX_PLACEHOLDERS`] placeholders. So a rendered value stays far below the store's 1 MiB.
//!
//! Errors give the 0-based byte offset of the fault in the template and never echo the
//! template (only, for an unknown placeholder, its lower-case keyword).

use std::fmt;
use std::ops::Range;

use rand::TryRng;
use rand::rngs::SysRng;
use zeroize::Zeroizing;

/// Longest template, in bytes.
pub const MAX_TEMPLATE_LEN: usize = 4096;
/// Most placeholders in one template.
pub const MAX_PLACEHOLDERS: usize = 64;
/// Fewest bytes a `{{random:...}}` makes: 64 bits.
pub const MIN_RANDOM_BYTES: usize = 8;
/// Most bytes a `{{random:...}}` makes: an 8192-bit key; more is surely a mistake.
pub const MAX_RANDOM_BYTES: usize = 1024;
/// Longest `{{password:N}}`.
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Fewest bits of randomness a `{{password:...}}` may carry.
pub const MIN_SECRET_BITS: u32 = 64;
/// The alphabet of `{{password:N}}`: letters and digits, safe inside URLs and shells.
pub const DEFAULT_ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

const RANDOM_FORM: &str = "{{random:hex:N}}, {{random:base64:N}} or {{random:base64url:N}}";
const PASSWORD_FORM: &str = "{{password:N}} or {{password:N:ALPHABET}}";

/// What is wrong with a template, or why it could not be rendered.
///
/// Every `at` is a 0-based byte offset into the template.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The template is longer than [`MAX_TEMPLATE_LEN`].
    #[error("template is longer than {limit} bytes")]
    TooLong {
        /// [`MAX_TEMPLATE_LEN`].
        limit: usize,
    },
    /// The template has more than [`MAX_PLACEHOLDERS`] placeholders.
    #[error("template has more than {limit} placeholders")]
    TooManyPlaceholders {
        /// [`MAX_PLACEHOLDERS`].
        limit: usize,
    },
    /// A `{{` has no `}}` after it.
    #[error("at byte {at}: `{{{{` is not closed by `}}}}`")]
    Unclosed {
        /// Where the `{{` is.
        at: usize,
    },
    /// `{{}}`.
    #[error("at byte {at}: empty placeholder `{{{{}}}}`")]
    Empty {
        /// Where the `{{` is.
        at: usize,
    },
    /// A placeholder holds a byte that has no place there.
    #[error("at byte {at}: {expected}")]
    BadByte {
        /// Where the byte is.
        at: usize,
        /// What may be there instead.
        expected: &'static str,
    },
    /// A lower-case placeholder this crate does not make.
    #[error(
        "at byte {at}: unknown placeholder {name}; known: random, password, uuid, deployment, \
         service, tier (upper-case ones are left to the target)"
    )]
    Unknown {
        /// Where its name starts.
        at: usize,
        /// Its keyword, quoted, when short enough to show (`` `rand` ``), else "`...`".
        name: String,
    },
    /// A known placeholder with the wrong arguments.
    #[error("at byte {at}: {placeholder} is written {form}")]
    Arguments {
        /// Where its name starts.
        at: usize,
        /// Its keyword.
        placeholder: &'static str,
        /// How it is written.
        form: &'static str,
    },
    /// `{{random:ENCODING:N}}` with an unknown encoding.
    #[error("at byte {at}: unknown encoding; use hex, base64 or base64url")]
    Encoding {
        /// Where the encoding starts.
        at: usize,
    },
    /// A count out of its bounds.
    #[error("at byte {at}: {placeholder} takes {min} to {max} {unit} ({why})")]
    Count {
        /// Where the count starts.
        at: usize,
        /// The placeholder's keyword.
        placeholder: &'static str,
        /// The least count.
        min: usize,
        /// The greatest count.
        max: usize,
        /// What is counted.
        unit: &'static str,
        /// Why the bounds are what they are.
        why: &'static str,
    },
    /// A password too short for its alphabet to carry [`MIN_SECRET_BITS`].
    #[error(
        "at byte {at}: this password carries {bits} bits of randomness, fewer than {min}: \
         make it longer or its alphabet larger"
    )]
    Weak {
        /// Where the placeholder's length starts.
        at: usize,
        /// The bits it carries, rounded down.
        bits: u32,
        /// [`MIN_SECRET_BITS`].
        min: u32,
    },
    /// A password alphabet that is not a set of printable characters.
    #[error("at byte {at}: {reason}")]
    Alphabet {
        /// Where the fault is.
        at: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Rendering needs a part of the context that was not given.
    #[error("at byte {at}: {{{{{what}}}}} needs the {needs}, and none was given")]
    Missing {
        /// Where the placeholder is.
        at: usize,
        /// `deployment`, `service` or `tier`.
        what: &'static str,
        /// What the caller should supply.
        needs: &'static str,
    },
    /// The OS random number generator failed.
    #[error("the operating system's random number generator failed; nothing was generated")]
    Random,
}

impl TemplateError {
    /// The 0-based byte offset of the fault in the template, when it has one.
    pub fn at(&self) -> Option<usize> {
        match self {
            TemplateError::Unclosed { at }
            | TemplateError::Empty { at }
            | TemplateError::BadByte { at, .. }
            | TemplateError::Unknown { at, .. }
            | TemplateError::Arguments { at, .. }
            | TemplateError::Encoding { at }
            | TemplateError::Count { at, .. }
            | TemplateError::Weak { at, .. }
            | TemplateError::Alphabet { at, .. }
            | TemplateError::Missing { at, .. } => Some(*at),
            TemplateError::TooLong { .. }
            | TemplateError::TooManyPlaceholders { .. }
            | TemplateError::Random => None,
        }
    }

    /// What is wrong in a fixed text of at most 64 bytes, without the position or any
    /// part of the template: for channels with a small limit (a ctl error), beside
    /// [`TemplateError::at`].
    pub fn brief(&self) -> &'static str {
        match self {
            TemplateError::TooLong { .. } => "a template is at most 4096 bytes",
            TemplateError::TooManyPlaceholders { .. } => "a template has at most 64 placeholders",
            TemplateError::Unclosed { .. } => "`{{` is not closed by `}}`",
            TemplateError::Empty { .. } => "empty placeholder `{{}}`",
            TemplateError::BadByte { .. } => "a byte that has no place in a placeholder",
            TemplateError::Unknown { .. } => {
                "unknown placeholder (known: random, password, uuid, ...)"
            }
            TemplateError::Arguments { placeholder, .. } => match *placeholder {
                "random" => "write {{random:hex|base64|base64url:N}}",
                "password" => "write {{password:N}} or {{password:N:ALPHABET}}",
                "ENV" => "write {{ENV:NAME}}",
                _ => "this placeholder takes no arguments",
            },
            TemplateError::Encoding { .. } => "unknown encoding; use hex, base64 or base64url",
            TemplateError::Count { placeholder, .. } => match *placeholder {
                "random" => "random takes 8 to 1024 bytes",
                _ => "password takes 1 to 1024 characters",
            },
            TemplateError::Weak { .. } => "a password of fewer than 64 bits of randomness",
            TemplateError::Alphabet { .. } => "a bad password alphabet",
            TemplateError::Missing { what, .. } => match *what {
                "deployment" => "{{deployment}} needs a deployment id",
                "service" => "{{service}} needs a service",
                _ => "{{tier}} needs a tier",
            },
            TemplateError::Random => "the OS random number generator failed",
        }
    }
}

/// A checked template.
///
/// Equal templates have equal text. `Debug` and `Display` print the text: a template is a
/// declaration, not a secret.
#[derive(Clone)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Clone, Debug)]
enum Part {
    Literal(Range<usize>),
    Random {
        encoding: Encoding,
        bytes: usize,
    },
    Password {
        len: usize,
        alphabet: Option<Range<usize>>,
    },
    Uuid,
    Context {
        field: ContextField,
        at: usize,
    },
    /// The whole `{{...}}`, copied verbatim.
    Target(Range<usize>),
}

#[derive(Clone, Copy, Debug)]
enum Encoding {
    Hex,
    Base64,
    Base64Url,
}

impl Encoding {
    fn encoded_len(self, bytes: usize) -> usize {
        match self {
            Encoding::Hex => 2 * bytes,
            Encoding::Base64 => bytes.div_ceil(3) * 4,
            Encoding::Base64Url => (4 * bytes).div_ceil(3),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum ContextField {
    Deployment,
    Service,
    Tier,
}

/// What a render knows about where the value goes; each part may be absent, and a
/// placeholder that needs an absent part is an error ([`TemplateError::Missing`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct RenderContext<'a> {
    /// The deployment's id, for `{{deployment}}`.
    pub deployment: Option<&'a str>,
    /// The service the value is for, for `{{service}}`.
    pub service: Option<&'a str>,
    /// The tier it is deployed to, for `{{tier}}`.
    pub tier: Option<&'a str>,
}

impl RenderContext<'_> {
    fn get(&self, field: ContextField) -> Option<&str> {
        match field {
            ContextField::Deployment => self.deployment,
            ContextField::Service => self.service,
            ContextField::Tier => self.tier,
        }
    }
}

impl ContextField {
    fn missing(self, at: usize) -> TemplateError {
        let (what, needs) = match self {
            ContextField::Deployment => ("deployment", "deployment id"),
            ContextField::Service => ("service", "service name"),
            ContextField::Tier => ("tier", "tier name"),
        };
        TemplateError::Missing { at, what, needs }
    }
}

impl Template {
    /// Parses and checks a template.
    ///
    /// # Errors
    /// The first fault, with its byte offset (see [`TemplateError`]).
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        if source.len() > MAX_TEMPLATE_LEN {
            return Err(TemplateError::TooLong {
                limit: MAX_TEMPLATE_LEN,
            });
        }
        let b = source.as_bytes();
        let mut parts = Vec::new();
        let mut literal_start = 0;
        let mut placeholders = 0;
        let mut i = 0;
        while i + 1 < b.len() {
            if b[i] != b'{' || b[i + 1] != b'{' {
                i += 1;
                continue;
            }
            if literal_start < i {
                parts.push(Part::Literal(literal_start..i));
            }
            let content = i + 2;
            let close = find_close(b, content).ok_or(TemplateError::Unclosed { at: i })?;
            placeholders += 1;
            if placeholders > MAX_PLACEHOLDERS {
                return Err(TemplateError::TooManyPlaceholders {
                    limit: MAX_PLACEHOLDERS,
                });
            }
            parts.push(placeholder(b, i, content, close)?);
            i = close + 2;
            literal_start = i;
        }
        if literal_start < b.len() {
            parts.push(Part::Literal(literal_start..b.len()));
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    /// The template's text, as declared.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The placeholders left to the target, without braces, each once, in order of first
    /// appearance (`USER_DATA`, `ENV:HOME`).
    pub fn target_placeholders(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for part in &self.parts {
            if let Part::Target(r) = part {
                let name = &self.source[r.start + 2..r.end - 2];
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// Whether rendering draws randomness (so two renders differ).
    pub fn is_random(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Random { .. } | Part::Password { .. } | Part::Uuid))
    }

    /// Renders the template: a fresh value, in a zeroizing buffer.
    ///
    /// # Errors
    /// [`TemplateError::Missing`] when a placeholder needs a part of `context` that is
    /// absent (checked before any randomness is drawn); [`TemplateError::Random`] when the
    /// OS RNG fails.
    pub fn render(&self, context: &RenderContext<'_>) -> Result<Zeroizing<String>, TemplateError> {
        self.render_with(context, &mut |buf| {
            SysRng
                .try_fill_bytes(buf)
                .map_err(|_| TemplateError::Random)
        })
    }

    /// [`Template::render`] with another source of random bytes (tests).
    pub(crate) fn render_with(
        &self,
        context: &RenderContext<'_>,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<(), TemplateError>,
    ) -> Result<Zeroizing<String>, TemplateError> {
        // The exact length first, so the buffer never reallocates (which would leave a copy
        // of the value behind in freed memory), and so a missing context fails early.
        let mut len = 0;
        for part in &self.parts {
            len += match part {
                Part::Literal(r) | Part::Target(r) => r.len(),
                Part::Random { encoding, bytes } => encoding.encoded_len(*bytes),
                Part::Password { len, .. } => *len,
                Part::Uuid => 36,
                Part::Context { field, at } => {
                    context.get(*field).ok_or_else(|| field.missing(*at))?.len()
                }
            };
        }
        let mut out = Zeroizing::new(String::with_capacity(len));
        for part in &self.parts {
            match part {
                Part::Literal(r) | Part::Target(r) => out.push_str(&self.source[r.clone()]),
                Part::Random { encoding, bytes } => {
                    let mut raw = Zeroizing::new(vec![0u8; *bytes]);
                    fill(&mut raw)?;
                    match encoding {
                        Encoding::Hex => push_hex(&mut out, &raw),
                        Encoding::Base64 => push_base64(&mut out, &raw, BASE64, true),
                        Encoding::Base64Url => push_base64(&mut out, &raw, BASE64URL, false),
                    }
                }
                Part::Password { len, alphabet } => {
                    let alphabet = match alphabet {
                        Some(r) => &self.source.as_bytes()[r.clone()],
                        None => DEFAULT_ALPHABET.as_bytes(),
                    };
                    push_password(&mut out, *len, alphabet, fill)?;
                }
                Part::Uuid => {
                    let mut raw = Zeroizing::new([0u8; 16]);
                    fill(&mut raw[..])?;
                    push_uuid(&mut out, &mut raw);
                }
                Part::Context { field, at } => {
                    out.push_str(context.get(*field).ok_or_else(|| field.missing(*at))?);
                }
            }
        }
        debug_assert_eq!(out.len(), len);
        Ok(out)
    }
}

fn find_close(b: &[u8], from: usize) -> Option<usize> {
    (from..b.len().saturating_sub(1)).find(|&j| b[j] == b'}' && b[j + 1] == b'}')
}

/// One placeholder: `b[open..open+2]` is `{{`, `b[start..end]` its content, `}}` at `end`.
fn placeholder(b: &[u8], open: usize, start: usize, end: usize) -> Result<Part, TemplateError> {
    let content = &b[start..end];
    match content.first() {
        None => Err(TemplateError::Empty { at: open }),
        Some(b'a'..=b'z') => made_here(b, start, end),
        Some(b'A'..=b'Z') => at_target(b, open, start, end),
        Some(_) => Err(TemplateError::BadByte {
            at: start,
            expected: "a placeholder starts with a letter: lower-case ones are made here \
                       ({{uuid}}), upper-case ones are the target's ({{USER_DATA}})",
        }),
    }
}

fn made_here(b: &[u8], start: usize, end: usize) -> Result<Part, TemplateError> {
    let keyword_end = (start..end).find(|&j| b[j] == b':').unwrap_or(end);
    if let Some(j) = (start..keyword_end).find(|&j| !is_keyword_byte(b[j])) {
        return Err(TemplateError::BadByte {
            at: j,
            expected: if b[j].is_ascii_whitespace() {
                "a placeholder holds no spaces: {{uuid}}, not {{ uuid }}"
            } else {
                "a placeholder's name is lower-case letters, digits, _ and -"
            },
        });
    }
    let keyword = &b[start..keyword_end];
    let args = (keyword_end < end).then_some(keyword_end + 1);
    let simple = |part: Part, placeholder: &'static str, form: &'static str| match args {
        None => Ok(part),
        Some(_) => Err(TemplateError::Arguments {
            at: start,
            placeholder,
            form,
        }),
    };
    match keyword {
        b"uuid" => simple(Part::Uuid, "uuid", "{{uuid}}"),
        b"deployment" => simple(
            Part::Context {
                field: ContextField::Deployment,
                at: start - 2,
            },
            "deployment",
            "{{deployment}}",
        ),
        b"service" => simple(
            Part::Context {
                field: ContextField::Service,
                at: start - 2,
            },
            "service",
            "{{service}}",
        ),
        b"tier" => simple(
            Part::Context {
                field: ContextField::Tier,
                at: start - 2,
            },
            "tier",
            "{{tier}}",
        ),
        b"random" => random(b, start, args, end),
        b"password" => password(b, start, args, end),
        _ => Err(TemplateError::Unknown {
            at: start,
            name: if keyword.len() <= 32 {
                // Lower-case letters, digits, _ and - only (checked above): safe to show.
                format!("`{}`", String::from_utf8_lossy(keyword))
            } else {
                "`...`".to_string()
            },
        }),
    }
}

fn is_keyword_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-')
}

fn random(b: &[u8], start: usize, args: Option<usize>, end: usize) -> Result<Part, TemplateError> {
    let wrong = TemplateError::Arguments {
        at: start,
        placeholder: "random",
        form: RANDOM_FORM,
    };
    let Some(enc_start) = args else {
        return Err(wrong);
    };
    let Some(enc_end) = (enc_start..end).find(|&j| b[j] == b':') else {
        return Err(wrong);
    };
    let encoding = match &b[enc_start..enc_end] {
        b"hex" => Encoding::Hex,
        b"base64" => Encoding::Base64,
        b"base64url" => Encoding::Base64Url,
        _ => return Err(TemplateError::Encoding { at: enc_start }),
    };
    let count_start = enc_end + 1;
    let bytes = count(b, count_start, end, "random")?;
    if !(MIN_RANDOM_BYTES..=MAX_RANDOM_BYTES).contains(&bytes) {
        return Err(TemplateError::Count {
            at: count_start,
            placeholder: "random",
            min: MIN_RANDOM_BYTES,
            max: MAX_RANDOM_BYTES,
            unit: "bytes",
            why: "fewer than 64 bits can be guessed; more is surely a mistake",
        });
    }
    Ok(Part::Random { encoding, bytes })
}

fn password(
    b: &[u8],
    start: usize,
    args: Option<usize>,
    end: usize,
) -> Result<Part, TemplateError> {
    let Some(len_start) = args else {
        return Err(TemplateError::Arguments {
            at: start,
            placeholder: "password",
            form: PASSWORD_FORM,
        });
    };
    let len_end = (len_start..end).find(|&j| b[j] == b':').unwrap_or(end);
    let len = count(b, len_start, len_end, "password")?;
    if !(1..=MAX_PASSWORD_LEN).contains(&len) {
        return Err(TemplateError::Count {
            at: len_start,
            placeholder: "password",
            min: 1,
            max: MAX_PASSWORD_LEN,
            unit: "characters",
            why: "more is surely a mistake",
        });
    }
    let alphabet = if len_end < end {
        let r = len_end + 1..end;
        check_alphabet(b, r.clone())?;
        Some(r)
    } else {
        None
    };
    let size = alphabet.as_ref().map_or(DEFAULT_ALPHABET.len(), Range::len);
    let bits = bits_of(len, size);
    if bits < MIN_SECRET_BITS {
        return Err(TemplateError::Weak {
            at: len_start,
            bits,
            min: MIN_SECRET_BITS,
        });
    }
    Ok(Part::Password { len, alphabet })
}

/// The bits of randomness in `len` characters drawn uniformly from `size`, rounded down.
fn bits_of(len: usize, size: usize) -> u32 {
    // Both are at most 1024 and 94, so this is exact enough and cannot overflow.
    let bits = (len as f64) * (size as f64).log2();
    // Round down, but not below an exact integer by float error (16 hex digits are 64).
    (bits + 1e-9).floor() as u32
}

fn check_alphabet(b: &[u8], r: Range<usize>) -> Result<(), TemplateError> {
    if r.len() < 2 {
        return Err(TemplateError::Alphabet {
            at: r.start,
            reason: "a password alphabet has at least 2 characters",
        });
    }
    let mut seen = [false; 128];
    for j in r {
        let c = b[j];
        if !(0x21..=0x7e).contains(&c) || c == b'{' || c == b'}' {
            return Err(TemplateError::Alphabet {
                at: j,
                reason: "a password alphabet is printable ASCII without spaces, { or }",
            });
        }
        if seen[usize::from(c)] {
            return Err(TemplateError::Alphabet {
                at: j,
                reason: "this character is already in the alphabet (each is listed once)",
            });
        }
        seen[usize::from(c)] = true;
    }
    Ok(())
}

fn count(
    b: &[u8],
    start: usize,
    end: usize,
    placeholder: &'static str,
) -> Result<usize, TemplateError> {
    let form = if placeholder == "random" {
        RANDOM_FORM
    } else {
        PASSWORD_FORM
    };
    if start >= end {
        return Err(TemplateError::Arguments {
            at: start,
            placeholder,
            form,
        });
    }
    if let Some(j) = (start..end).find(|&j| !b[j].is_ascii_digit()) {
        return Err(TemplateError::BadByte {
            at: j,
            expected: "a count is a whole number, in digits",
        });
    }
    // At most 7 digits are read; longer counts are out of bounds either way.
    let mut n = 0usize;
    for &d in &b[start..end.min(start + 7)] {
        n = n * 10 + usize::from(d - b'0');
    }
    if end - start > 7 {
        n = usize::MAX;
    }
    Ok(n)
}

fn at_target(b: &[u8], open: usize, start: usize, end: usize) -> Result<Part, TemplateError> {
    let name_end = (start..end).find(|&j| b[j] == b':').unwrap_or(end);
    if let Some(j) = (start..name_end)
        .find(|&j| !(b[j].is_ascii_uppercase() || b[j].is_ascii_digit() || b[j] == b'_'))
    {
        return Err(TemplateError::BadByte {
            at: j,
            expected: "a target's placeholder is upper-case A-Z, 0-9 and _ ({{USER_DATA}}); \
                       lower-case ones are made here",
        });
    }
    let name = &b[start..name_end];
    let arg = name_end + 1..end;
    let has_arg = name_end < end;
    if name == b"ENV" {
        let ok = has_arg
            && !arg.is_empty()
            && !b[arg.start].is_ascii_digit()
            && b[arg.clone()]
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || c == b'_');
        if !ok {
            return Err(TemplateError::Arguments {
                at: start,
                placeholder: "ENV",
                form: "{{ENV:NAME}}, NAME a variable name ([A-Za-z_][A-Za-z0-9_]*)",
            });
        }
    } else if has_arg {
        if arg.is_empty() {
            return Err(TemplateError::BadByte {
                at: arg.start,
                expected: "a target placeholder's argument follows its `:` ({{NAME:ARG}})",
            });
        }
        if let Some(j) = arg
            .clone()
            .find(|&j| !(b[j].is_ascii_alphanumeric() || matches!(b[j], b'_' | b'.' | b'/' | b'-')))
        {
            return Err(TemplateError::BadByte {
                at: j,
                expected: "a target placeholder's argument is A-Z a-z 0-9 _ . / and -",
            });
        }
    }
    Ok(Part::Target(open..end + 2))
}

const HEX: &[u8; 16] = b"0123456789abcdef";
pub(crate) const BASE64: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn push_hex(out: &mut String, raw: &[u8]) {
    for &byte in raw {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
}

/// Base64 written straight into `out` (a library would stage it in buffers of its own,
/// which are not zeroized).
pub(crate) fn push_base64(out: &mut String, raw: &[u8], alphabet: &[u8; 64], pad: bool) {
    let sym = |i: u32| char::from(alphabet[(i & 0x3f) as usize]);
    for chunk in raw.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | u32::from(c) << (16 - 8 * i));
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        if chunk.len() > 1 {
            out.push(sym(n >> 6));
        } else if pad {
            out.push('=');
        }
        if chunk.len() > 2 {
            out.push(sym(n));
        } else if pad {
            out.push('=');
        }
    }
}

/// `len` characters drawn uniformly from `alphabet` (at most 94 of them): a random byte is
/// used only when below the largest multiple of the alphabet's size, so no character is
/// likelier than another (no modulo bias).
fn push_password(
    out: &mut String,
    len: usize,
    alphabet: &[u8],
    fill: &mut dyn FnMut(&mut [u8]) -> Result<(), TemplateError>,
) -> Result<(), TemplateError> {
    let size = alphabet.len();
    let limit = 256 - 256 % size;
    let mut pool = Zeroizing::new(vec![0u8; len + len / 2 + 16]);
    let mut made = 0;
    while made < len {
        fill(&mut pool)?;
        for &byte in pool.iter() {
            if made == len {
                break;
            }
            if usize::from(byte) < limit {
                out.push(char::from(alphabet[usize::from(byte) % size]));
                made += 1;
            }
        }
    }
    Ok(())
}

fn push_uuid(out: &mut String, raw: &mut [u8; 16]) {
    // RFC 9562 version 4: the version nibble is 4, the variant bits are 10.
    raw[6] = (raw[6] & 0x0f) | 0x40;
    raw[8] = (raw[8] & 0x3f) | 0x80;
    for (i, chunk) in [
        &raw[0..4],
        &raw[4..6],
        &raw[6..8],
        &raw[8..10],
        &raw[10..16],
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            out.push('-');
        }
        push_hex(out, chunk);
    }
}

impl PartialEq for Template {
    fn eq(&self, other: &Template) -> bool {
        self.source == other.source
    }
}

impl Eq for Template {}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Template").field(&self.source).finish()
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for Template {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<Template, TemplateError> {
        Template::parse(s)
    }
}

impl serde::Serialize for Template {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> serde::Deserialize<'de> for Template {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Template, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Template::parse(&text).map_err(|e| serde::de::Error::custom(format!("template {e}")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests;
