//! Parsing one complete line (nom): tokens, then the command they spell.
//!
//! The line is whole here: [`CtlBuffer`](crate::CtlBuffer)'s scanner has found where it ends
//! (quotes closed, literal bytes all present) and removed the newline and a CR before it. So
//! these parsers are nom's `complete` ones, and the only unquoted newline a line can hold is
//! the one ending a `{N}` literal header.

use nom::branch::alt;
use nom::bytes::complete::{is_not, tag, take, take_while, take_while1};
use nom::character::complete::digit1;
use nom::combinator::{opt, recognize};
use nom::multi::{many0_count, many1_count};
use nom::sequence::delimited;
use nom::{IResult, Parser};
use zeroize::Zeroizing;

use crate::command::AuditQuery;
use crate::command::{
    self, VERBS, Verb, check_deployment, check_name, check_service, check_value, usage,
};
use crate::deployment::{
    self, APPLY_FLAGS, CatalogCommand, CatalogFormat, META_OPTIONS, MetaFields, PROMPT_OPTIONS,
    PromptArgs, STRATEGIES, StrategyArg,
};
use crate::error::{ACTIONS, ErrorKind, suggest};
use crate::{Command, MAX_CATALOG_LEN, MAX_VALUE_LEN, NO_UID, Value};

type Res<'a, O> = IResult<&'a [u8], O>;

/// A token's bytes once unquoted. Any token may be a secret value, so all are zeroized.
type Token = Zeroizing<Vec<u8>>;

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn blanks(i: &[u8]) -> Res<'_, &[u8]> {
    take_while(is_blank).parse(i)
}

/// `{N}` then a newline (a CR before it is tolerated): the header of a literal. Returns N's
/// digits.
fn literal_header(i: &[u8]) -> Res<'_, &[u8]> {
    delimited(tag("{"), digit1, (tag("}"), opt(tag("\r")), tag("\n"))).parse(i)
}

/// A run of bytes outside quotes.
fn bare(i: &[u8]) -> Res<'_, &[u8]> {
    take_while1(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\'')).parse(i)
}

/// `'...'`, where `''` stands for one quote. Returns the raw text, quotes included.
fn quoted(i: &[u8]) -> Res<'_, &[u8]> {
    recognize((
        tag("'"),
        many0_count(alt((is_not("'"), tag("''")))),
        tag("'"),
    ))
    .parse(i)
}

/// A word: bare runs and quoted strings, abutting (`ab'c d'e` is one word). Returns the raw
/// text; counting instead of collecting keeps a word of a million `''`s from allocating.
fn word(i: &[u8]) -> Res<'_, &[u8]> {
    recognize(many1_count(alt((bare, quoted)))).parse(i)
}

/// The bytes a word stands for: quotes dropped, `''` inside quotes made one `'`.
///
/// `raw` has been recognized by [`word`], so its quotes pair up.
fn unquote(raw: &[u8]) -> Token {
    // Unquoting only shrinks, so this capacity is never outgrown (no copy left behind
    // by a reallocation).
    let mut out = Zeroizing::new(Vec::with_capacity(raw.len()));
    let mut in_quote = false;
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\'' {
            out.push(b);
        } else if in_quote && raw.get(i + 1) == Some(&b'\'') {
            out.push(b'\'');
            i += 1;
        } else {
            in_quote = !in_quote;
        }
        i += 1;
    }
    out
}

/// A decimal number from ASCII digits, saturating (any N past a limit is as bad as any
/// other).
pub(crate) fn decimal(digits: &[u8]) -> u64 {
    digits.iter().fold(0u64, |n, &d| {
        // wrapping_sub: callers pass digits only; anything else must still not panic.
        n.saturating_mul(10)
            .saturating_add(u64::from(d.wrapping_sub(b'0')))
    })
}

/// The tokens of a line, one at a time (a command needs a handful, and a line of a
/// million words should not become a million buffers).
pub(crate) struct Tokens<'a> {
    rest: &'a [u8],
    /// The longest `{N}` literal taken: a value's, or (on a `catalog` line) a catalog
    /// file's.
    max_literal: usize,
}

impl<'a> Tokens<'a> {
    pub(crate) fn new(line: &'a [u8]) -> Self {
        Tokens {
            rest: line,
            max_literal: MAX_VALUE_LEN,
        }
    }

    /// The next token, `None` at the end of the line.
    pub(crate) fn next_token(&mut self) -> Result<Option<Token>, ErrorKind> {
        let i = skip_blanks(self.rest);
        if i.is_empty() {
            self.rest = i;
            return Ok(None);
        }
        if let Ok((after, digits)) = literal_header(i) {
            let n = decimal(digits);
            if n > self.max_literal as u64 {
                return Err(ErrorKind::LiteralTooLong);
            }
            let n = n as usize; // at most max_literal, checked above
            let (after, body) = take::<_, _, nom::error::Error<&[u8]>>(n)
                .parse(after)
                .map_err(|_| ErrorKind::LiteralCutShort)?;
            if after.first().is_some_and(|&b| !is_blank(b)) {
                return Err(ErrorKind::MalformedLiteral);
            }
            self.rest = after;
            return Ok(Some(Zeroizing::new(body.to_vec())));
        }
        // A word can fail to start, or stop short of a blank, only at a quote that never
        // closes (the scanner ends lines at every other unquoted newline).
        let (after, raw) = word(i).map_err(|_| ErrorKind::UnterminatedQuote)?;
        if after.first().is_some_and(|&b| !is_blank(b)) {
            return Err(ErrorKind::UnterminatedQuote);
        }
        // `{…}` is literal syntax: a typo in a header must not quietly become a value
        // (the bytes after it would then be read as commands).
        if raw.first() == Some(&b'{') && raw.last() == Some(&b'}') {
            return Err(ErrorKind::MalformedLiteral);
        }
        self.rest = after;
        Ok(Some(unquote(raw)))
    }

    /// Whether anything but blanks is left.
    fn has_more(&self) -> bool {
        !skip_blanks(self.rest).is_empty()
    }

    /// Takes the next token if it is `word` written bare (neither quoted nor a literal),
    /// so that a grammar word may stand where a value could: a value spelled like it is
    /// sent quoted or as a `{N}` literal, as [`Command::encode`] sends every value.
    fn take_bare(&mut self, word: &str) -> bool {
        let i = skip_blanks(self.rest);
        let Some(after) = i.strip_prefix(word.as_bytes()) else {
            return false;
        };
        if after.first().is_some_and(|&b| !is_blank(b)) {
            return false;
        }
        self.rest = after;
        true
    }
}

fn skip_blanks(i: &[u8]) -> &[u8] {
    match blanks(i) {
        Ok((rest, _)) => rest,
        // take_while never fails on complete input; keeping the input is the safe answer.
        Err(_) => i,
    }
}

/// The verb a (possibly partial) line begins with, if its first token is complete and one
/// of ours. Names the command in errors found before the line is whole.
pub(crate) fn verb_of(prefix: &[u8]) -> Option<&'static str> {
    let i = skip_blanks(prefix);
    let (after, raw) = word(i).ok()?;
    // The word may go on past the prefix unless a blank ends it here; and a word much
    // longer than any verb, even quoted, is not worth unquoting.
    if !after.first().is_some_and(|&b| is_blank(b)) || raw.len() > 32 {
        return None;
    }
    let token = unquote(raw);
    find_verb(&token).map(|v| v.word)
}

/// The longest `{N}` literal a line of `verb` takes.
pub(crate) fn max_literal(verb: Option<&str>) -> usize {
    if verb == Some(deployment::CATALOG) {
        MAX_CATALOG_LEN
    } else {
        MAX_VALUE_LEN
    }
}

/// The command word `token` is, if it is one.
fn find_verb(token: &[u8]) -> Option<&'static Verb> {
    VERBS.iter().find(|v| v.word.as_bytes() == token)
}

/// The error of a line: the verb, once the first word was one, and what was wrong.
pub(crate) type LineError = (Option<&'static str>, ErrorKind);

/// Parses one whole line (without its newline). `Ok(None)` for a blank line.
pub(crate) fn parse_line(line: &[u8]) -> Result<Option<Command>, LineError> {
    let mut tokens = Tokens::new(line);
    let Some(first) = tokens.next_token().map_err(|kind| (None, kind))? else {
        return Ok(None);
    };
    let Some(verb) = find_verb(&first) else {
        return Err((
            None,
            ErrorKind::UnknownCommand {
                suggestion: suggest(&first, VERBS.iter().map(|v| v.word)),
            },
        ));
    };
    tokens.max_literal = max_literal(Some(verb.word));
    let command = (verb.parse)(&mut tokens).map_err(|kind| (Some(verb.word), kind))?;
    Ok(Some(command))
}

// ---- Each verb's arguments, read left to right; the first problem found is the error.

/// A command without arguments.
pub(crate) fn no_args(
    t: &mut Tokens<'_>,
    command: Command,
    usage: &'static str,
) -> Result<Command, ErrorKind> {
    end(t, usage, false)?;
    Ok(command)
}

/// `set NAME VALUE`.
pub(crate) fn set(t: &mut Tokens<'_>) -> Result<Command, ErrorKind> {
    let name = check_name(&arg(t, "name", usage::SET)?)?;
    let value = value(t, usage::SET)?;
    end(t, usage::SET, true)?;
    Ok(Command::Set { name, value })
}

/// `delete NAME`.
pub(crate) fn delete(t: &mut Tokens<'_>) -> Result<Command, ErrorKind> {
    let name = check_name(&arg(t, "name", usage::DELETE)?)?;
    end(t, usage::DELETE, false)?;
    Ok(Command::Delete { name })
}

/// `grant SERVICE NAME [expires DURATION]`, `revoke SERVICE NAME`.
pub(crate) fn grant_or_revoke(t: &mut Tokens<'_>, verb: &str) -> Result<Command, ErrorKind> {
    let usage = if verb == command::GRANT {
        usage::GRANT
    } else {
        usage::REVOKE
    };
    let service = check_service(&arg(t, "service", usage)?)?;
    let name = check_name(&arg(t, "name", usage)?)?;
    if verb != command::GRANT {
        end(t, usage, false)?;
        return Ok(Command::Revoke { service, name });
    }
    let expires = match t.next_token()? {
        None => None,
        Some(w) if w.as_slice() == command::EXPIRES.as_bytes() => {
            let secs = duration(&arg(t, "duration", usage)?)?;
            end(t, usage, false)?;
            Some(secs)
        }
        Some(other) => return Err(unknown(&other, &[command::EXPIRES], "expires")),
    };
    Ok(Command::Grant {
        service,
        name,
        expires,
    })
}

/// A command that takes a secret's name and nothing else (`discard`, `rollback`,
/// `retire`, `history`).
pub(crate) fn name_only(
    t: &mut Tokens<'_>,
    usage: &'static str,
    command: fn(String) -> Command,
) -> Result<Command, ErrorKind> {
    let name = check_name(&arg(t, "name", usage)?)?;
    end(t, usage, false)?;
    Ok(command(name))
}

/// `stage NAME VALUE`, `stage NAME generate [TEMPLATE]`.
pub(crate) fn stage(t: &mut Tokens<'_>) -> Result<Command, ErrorKind> {
    let name = check_name(&arg(t, "name", usage::STAGE)?)?;
    if t.take_bare(command::GENERATE_WORD) {
        let template = t.next_token()?.map(|w| text(&w)).transpose()?;
        end(t, usage::STAGE_GENERATE, false)?;
        return Ok(Command::StageGenerate { name, template });
    }
    let value = value(t, usage::STAGE)?;
    end(t, usage::STAGE_VALUE, true)?;
    Ok(Command::Stage { name, value })
}

/// `promote NAME [overlap DURATION [retire-when-read] | revoke-previous]`.
pub(crate) fn promote(t: &mut Tokens<'_>) -> Result<Command, ErrorKind> {
    let u = usage::PROMOTE;
    let name = check_name(&arg(t, "name", u)?)?;
    let (mut overlap, mut revoke_previous, mut retire_when_read) = (None, false, false);
    while let Some(option) = t.next_token()? {
        match option.as_slice() {
            w if w == command::OVERLAP.as_bytes() => {
                if overlap
                    .replace(duration(&arg(t, "duration", u)?)?)
                    .is_some()
                {
                    return Err(ErrorKind::RepeatedOption);
                }
            }
            w if w == command::REVOKE_PREVIOUS.as_bytes() => {
                if std::mem::replace(&mut revoke_previous, true) {
                    return Err(ErrorKind::RepeatedOption);
                }
            }
            w if w == command::RETIRE_WHEN_READ.as_bytes() => {
                if std::mem::replace(&mut retire_when_read, true) {
                    return Err(ErrorKind::RepeatedOption);
                }
            }
            other => {
                return Err(unknown(
                    other,
                    &[
                        command::OVERLAP,
                        command::REVOKE_PREVIOUS,
                        command::RETIRE_WHEN_READ,
                    ],
                    "overlap, revoke-previous, retire-when-read",
                ));
            }
        }
    }
    if overlap.is_some() && revoke_previous {
        return Err(ErrorKind::OverlapAndRevoke);
    }
    if retire_when_read && overlap.is_none() {
        return Err(ErrorKind::RetireWhenReadWithoutOverlap);
    }
    Ok(Command::Promote {
        name,
        overlap,
        revoke_previous,
        retire_when_read,
    })
}

/// `reason TEXT`.
pub(crate) fn reason(t: &mut Tokens<'_>) -> Result<Command, ErrorKind> {
    let token = arg(t, "reason", usage::REASON)?;
    end(t, usage::REASON, false)?;
    let text = String::from_utf8(token.to_vec()).map_err(|_| ErrorKind::BadReason)?;
    if !is_reason(&text) {
        return Err(ErrorKind::BadReason);
    }
    Ok(Command::Reason { text })
}

/// Whether `text` may be a reason: at most [`model::MAX_REASON_LEN`] bytes, no control
/// characters (it is shown in listings and logs, one line each).
pub(crate) fn is_reason(text: &str) -> bool {
    text.len() <= model::MAX_REASON_LEN && !text.chars().any(char::is_control)
}

/// A duration: `30s`, `15m`, `12h`, `90d`, `2w`, in seconds.
fn duration(token: &[u8]) -> Result<u64, ErrorKind> {
    let text = std::str::from_utf8(token)
        .map_err(|_| ErrorKind::BadDuration(model::DurationError::Form))?;
    model::parse_duration(text).map_err(ErrorKind::BadDuration)
}

/// `service SERVICE (uid UID | manifest VALUE | tiers LIST | remove)`.
pub(crate) fn service(t: &mut Tokens<'_>) -> Result<Command, ErrorKind> {
    let service = check_service(&arg(t, "service", usage::SERVICE)?)?;
    let action = arg(t, "action", usage::SERVICE)?;
    match action.as_slice() {
        b"uid" => {
            let uid = uid(&arg(t, "uid", usage::SERVICE_UID)?)?;
            end(t, usage::SERVICE_UID, false)?;
            Ok(Command::ServiceUid { service, uid })
        }
        b"manifest" => {
            let manifest = value(t, usage::SERVICE_MANIFEST)?;
            end(t, usage::SERVICE_MANIFEST, true)?;
            Ok(Command::ServiceManifest { service, manifest })
        }
        b"tiers" => {
            let list = text(&arg(t, "tiers", usage::SERVICE_TIERS)?)?;
            end(t, usage::SERVICE_TIERS, false)?;
            let tiers = match list.as_str() {
                "*" => None,
                "" => Some(Vec::new()),
                listed => Some(listed.split(',').map(str::to_string).collect()),
            };
            Ok(Command::Catalog(CatalogCommand::ServiceTiers {
                service,
                tiers,
            }))
        }
        b"remove" => {
            end(t, usage::SERVICE_REMOVE, false)?;
            Ok(Command::ServiceRemove { service })
        }
        b"suspend" => {
            end(t, usage::SERVICE_SUSPEND, false)?;
            Ok(Command::ServiceSuspend { service })
        }
        b"resume" => {
            end(t, usage::SERVICE_RESUME, false)?;
            Ok(Command::ServiceResume { service })
        }
        other => Err(ErrorKind::UnknownAction {
            suggestion: suggest(other, ACTIONS),
        }),
    }
}

/// `tier add TIER [core]`, `tier remove TIER`.
pub(crate) fn tier(t: &mut Tokens<'_>) -> Result<Command, ErrorKind> {
    let action = arg(t, "action", usage::TIER)?;
    let command = match action.as_slice() {
        b"add" => {
            let tier = text(&arg(t, "tier", usage::TIER_ADD)?)?;
            let core = match t.next_token()? {
                None => false,
                Some(w) if w.as_slice() == b"core" => true,
                Some(other) => return Err(unknown(&other, &["core"], "core")),
            };
            end(t, usage::TIER_ADD, false)?;
            CatalogCommand::TierAdd { tier, core }
        }
        b"remove" => {
            let tier = text(&arg(t, "tier", usage::TIER_REMOVE)?)?;
            end(t, usage::TIER_REMOVE, false)?;
            CatalogCommand::TierRemove { tier }
        }
        other => return Err(unknown(other, &["add", "remove"], "add, remove")),
    };
    Ok(Command::Catalog(command))
}

/// `meta NAME [OPTION TEXT]...`, `meta NAME remove`.
pub(crate) fn meta(t: &mut Tokens<'_>) -> Result<Command, ErrorKind> {
    let name = check_name(&arg(t, "name", usage::META)?)?;
    let mut fields = MetaFields::default();
    let mut first = true;
    while let Some(option) = t.next_token()? {
        if first && option.as_slice() == b"remove" {
            end(t, usage::META_REMOVE, false)?;
            return Ok(Command::Catalog(CatalogCommand::MetaRemove { name }));
        }
        first = false;
        let Some(slot) = fields.slot(&option) else {
            return Err(unknown(
                &option,
                &META_OPTIONS,
                "class, owner, rotate-every, description",
            ));
        };
        if slot.is_some() {
            return Err(ErrorKind::RepeatedOption);
        }
        *slot = Some(text(&arg(t, "value", usage::META)?)?);
    }
    Ok(Command::Catalog(CatalogCommand::Meta { name, fields }))
}

/// `strategy NAME tier TIER [class CLASS] STRATEGY`.
pub(crate) fn strategy(t: &mut Tokens<'_>) -> Result<Command, ErrorKind> {
    let name = check_name(&arg(t, "name", usage::STRATEGY)?)?;
    let tier = on_tier(t, usage::STRATEGY)?;
    let mut word = arg(t, "strategy", usage::STRATEGY)?;
    let mut class = None;
    if word.as_slice() == deployment::CLASS.as_bytes() {
        class = Some(text(&arg(t, "class", usage::STRATEGY)?)?);
        word = arg(t, "strategy", usage::STRATEGY)?;
    }
    let strategy = match word.as_slice() {
        b"serve" => {
            let template = t.next_token()?.map(|w| text(&w)).transpose()?;
            end(t, usage::SERVE, false)?;
            StrategyArg::Serve { template }
        }
        b"strip" => {
            end(t, usage::STRIP, false)?;
            StrategyArg::Strip
        }
        b"generate" => {
            let template = text(&arg(t, "template", usage::GENERATE_STRATEGY)?)?;
            end(t, usage::GENERATE_STRATEGY, false)?;
            StrategyArg::Generate { template }
        }
        b"prompt" => StrategyArg::Prompt(prompt(t)?),
        b"delegate" => {
            let reference = text(&arg(t, "reference", usage::DELEGATE)?)?;
            end(t, usage::DELEGATE, false)?;
            StrategyArg::Delegate { reference }
        }
        // A class for no strategy means nothing: refused rather than dropped.
        b"remove" if class.is_none() => {
            end(t, usage::REMOVE_STRATEGY, false)?;
            StrategyArg::Remove
        }
        b"remove" => {
            return Err(ErrorKind::TooManyArguments {
                usage: usage::REMOVE_STRATEGY,
                value: false,
            });
        }
        other => {
            return Err(unknown(
                other,
                &STRATEGIES,
                "serve, strip, generate, prompt, delegate, remove",
            ));
        }
    };
    Ok(Command::Catalog(CatalogCommand::Strategy {
        name,
        tier,
        class,
        strategy,
    }))
}

/// `prompt LABEL [help TEXT] [kind KIND] [pattern TEXT] [min N] [max N] [optional]`.
fn prompt(t: &mut Tokens<'_>) -> Result<PromptArgs, ErrorKind> {
    let mut p = PromptArgs {
        label: text(&arg(t, "label", usage::PROMPT)?)?,
        ..PromptArgs::default()
    };
    let mut seen: Vec<Vec<u8>> = Vec::new();
    while let Some(option) = t.next_token()? {
        if seen.iter().any(|s| *s == option.as_slice()) {
            return Err(ErrorKind::RepeatedOption);
        }
        seen.push(option.to_vec());
        match option.as_slice() {
            b"help" => p.help = Some(text(&arg(t, "value", usage::PROMPT)?)?),
            b"kind" => p.kind = Some(text(&arg(t, "value", usage::PROMPT)?)?),
            b"pattern" => p.pattern = Some(text(&arg(t, "value", usage::PROMPT)?)?),
            b"min" => p.min = Some(number(&arg(t, "value", usage::PROMPT)?)?),
            b"max" => p.max = Some(number(&arg(t, "value", usage::PROMPT)?)?),
            b"optional" => p.optional = true,
            other => {
                return Err(unknown(
                    other,
                    &PROMPT_OPTIONS,
                    "help, kind, pattern, min, max, optional",
                ));
            }
        }
    }
    Ok(p)
}

/// `present NAME tier TIER (yes|no)`.
pub(crate) fn present(t: &mut Tokens<'_>) -> Result<Command, ErrorKind> {
    let name = check_name(&arg(t, "name", usage::PRESENT)?)?;
    let tier = on_tier(t, usage::PRESENT)?;
    let present = match arg(t, "yes or no", usage::PRESENT)?.as_slice() {
        b"yes" => true,
        b"no" => false,
        other => return Err(unknown(other, &["yes", "no"], "yes, no")),
    };
    end(t, usage::PRESENT, false)?;
    Ok(Command::Catalog(CatalogCommand::Present {
        name,
        tier,
        present,
    }))
}

/// `generate NAME [TEMPLATE]`.
pub(crate) fn generate(t: &mut Tokens<'_>) -> Result<Command, ErrorKind> {
    let name = check_name(&arg(t, "name", usage::GENERATE)?)?;
    let template = t.next_token()?.map(|w| text(&w)).transpose()?;
    end(t, usage::GENERATE, false)?;
    Ok(Command::Catalog(CatalogCommand::Generate {
        name,
        template,
    }))
}

/// `plan SERVICE TIER`.
pub(crate) fn plan(t: &mut Tokens<'_>) -> Result<Command, ErrorKind> {
    let service = check_service(&arg(t, "service", usage::PLAN)?)?;
    let tier = text(&arg(t, "tier", usage::PLAN)?)?;
    end(t, usage::PLAN, false)?;
    Ok(Command::Catalog(CatalogCommand::Plan { service, tier }))
}

/// `lint [TIER]`.
pub(crate) fn lint(t: &mut Tokens<'_>) -> Result<Command, ErrorKind> {
    let tier = t.next_token()?.map(|w| text(&w)).transpose()?;
    end(t, usage::LINT, false)?;
    Ok(Command::Catalog(CatalogCommand::Lint { tier }))
}

/// `catalog export [toml|json]`, `catalog apply [dry-run] [prune] [with-values] FILE`.
pub(crate) fn catalog(t: &mut Tokens<'_>) -> Result<Command, ErrorKind> {
    let action = arg(t, "action", usage::CATALOG)?;
    let command = match action.as_slice() {
        b"export" => {
            let format = match t.next_token()?.as_deref().map(Vec::as_slice) {
                None | Some(b"toml") => CatalogFormat::Toml,
                Some(b"json") => CatalogFormat::Json,
                Some(other) => return Err(unknown(other, &["toml", "json"], "toml, json")),
            };
            end(t, usage::EXPORT, false)?;
            CatalogCommand::Export { format }
        }
        b"apply" => {
            let mut flags = [false; 3];
            let mut format = None;
            let file = loop {
                let token = arg(t, "file", usage::APPLY)?;
                let named = match token.as_slice() {
                    b"toml" => Some(CatalogFormat::Toml),
                    b"json" => Some(CatalogFormat::Json),
                    _ => None,
                };
                if let Some(f) = named {
                    if format.replace(f).is_some() {
                        return Err(ErrorKind::RepeatedOption);
                    }
                    continue;
                }
                match APPLY_FLAGS
                    .iter()
                    .position(|f| f.as_bytes() == token.as_slice())
                {
                    Some(i) if flags[i] => return Err(ErrorKind::RepeatedOption),
                    Some(i) => flags[i] = true,
                    None => break Value::from(token),
                }
            };
            end(t, usage::APPLY, false)?;
            let [dry_run, prune, with_values] = flags;
            CatalogCommand::Apply {
                format,
                file,
                dry_run,
                prune,
                with_values,
            }
        }
        other => return Err(unknown(other, &["apply", "export"], "apply, export")),
    };
    Ok(Command::Catalog(command))
}

/// `bundle create SERVICE TIER DEPLOYMENT [replace]`, `bundle list [deployment D]
/// [secret NAME]`, `bundle identify VALUE`.
pub(crate) fn bundle(t: &mut Tokens<'_>) -> Result<Command, ErrorKind> {
    let action = arg(t, "action", usage::BUNDLE)?;
    let command = match action.as_slice() {
        b"create" => {
            let u = usage::BUNDLE_CREATE;
            let service = check_service(&arg(t, "service", u)?)?;
            let tier = text(&arg(t, "tier", u)?)?;
            let deployment = check_deployment(&arg(t, "deployment", u)?)?;
            let replace = match t.next_token()? {
                None => false,
                Some(w) if w.as_slice() == b"replace" => true,
                Some(other) => return Err(unknown(&other, &["replace"], "replace")),
            };
            end(t, u, false)?;
            CatalogCommand::BundleCreate {
                service,
                tier,
                deployment,
                replace,
            }
        }
        b"list" => {
            let u = usage::BUNDLE_LIST;
            let (mut deployment, mut secret) = (None, None);
            while let Some(option) = t.next_token()? {
                match option.as_slice() {
                    b"deployment" => {
                        let id = check_deployment(&arg(t, "deployment", u)?)?;
                        if deployment.replace(id).is_some() {
                            return Err(ErrorKind::RepeatedOption);
                        }
                    }
                    b"secret" => {
                        let name = check_name(&arg(t, "name", u)?)?;
                        if secret.replace(name).is_some() {
                            return Err(ErrorKind::RepeatedOption);
                        }
                    }
                    other => {
                        return Err(unknown(
                            other,
                            &["deployment", "secret"],
                            "deployment, secret",
                        ));
                    }
                }
            }
            CatalogCommand::BundleList { deployment, secret }
        }
        b"identify" => {
            let u = usage::BUNDLE_IDENTIFY;
            let value = value(t, u)?;
            end(t, u, true)?;
            CatalogCommand::BundleIdentify { value }
        }
        other => {
            return Err(unknown(
                other,
                &["create", "list", "identify"],
                "create, list, identify",
            ));
        }
    };
    Ok(Command::Catalog(command))
}

/// `token create PRINCIPAL [expires DURATION]`, `token revoke ID`, `token list`.
pub(crate) fn token(t: &mut Tokens<'_>) -> Result<Command, ErrorKind> {
    let action = arg(t, "action", usage::TOKEN)?;
    match action.as_slice() {
        b"create" => {
            let u = usage::TOKEN_CREATE;
            let principal = command::check_principal(&arg(t, "principal", u)?)?;
            let expires = match t.next_token()? {
                None => None,
                Some(w) if w.as_slice() == command::EXPIRES.as_bytes() => {
                    let secs = duration(&arg(t, "duration", u)?)?;
                    end(t, u, false)?;
                    Some(secs)
                }
                Some(other) => return Err(unknown(&other, &[command::EXPIRES], "expires")),
            };
            Ok(Command::TokenCreate { principal, expires })
        }
        b"revoke" => {
            let u = usage::TOKEN_REVOKE;
            let id = command::check_token_id(&arg(t, "token ID", u)?)?;
            end(t, u, false)?;
            Ok(Command::TokenRevoke { id })
        }
        b"list" => {
            end(t, usage::TOKEN_LIST, false)?;
            Ok(Command::TokenList)
        }
        other => Err(unknown(
            other,
            &["create", "revoke", "list"],
            "create, revoke, list",
        )),
    }
}

/// `tier TIER`, the part of `strategy` and `present` that names the tier.
fn on_tier(t: &mut Tokens<'_>, usage: &'static str) -> Result<String, ErrorKind> {
    let word = arg(t, "tier", usage)?;
    if word.as_slice() != b"tier" {
        return Err(ErrorKind::ExpectedWord {
            word: "tier",
            usage,
        });
    }
    text(&arg(t, "tier", usage)?)
}

/// An option or action word that is none of `choices`.
/// `audit (head | since [CHAIN] SEQ [limit N] | verify [head HEAD]...)`.
pub(crate) fn audit(t: &mut Tokens<'_>) -> Result<Command, ErrorKind> {
    let action = arg(t, "action", usage::AUDIT)?;
    let query = match action.as_slice() {
        b"head" => {
            end(t, usage::AUDIT_HEAD, false)?;
            AuditQuery::Head
        }
        b"since" => {
            let u = usage::AUDIT_SINCE;
            let first = arg(t, "record number", u)?;
            let (chain, after) = if first.iter().all(u8::is_ascii_digit) {
                (None, sequence(&first)?)
            } else {
                let chain = check_name(&first)?;
                (Some(chain), sequence(&arg(t, "record number", u)?)?)
            };
            let limit = match t.next_token()? {
                None => None,
                Some(w) if w.as_slice() == b"limit" => Some(sequence(&arg(t, "limit", u)?)?),
                Some(other) => return Err(unknown(&other, &["limit"], "limit")),
            };
            end(t, u, false)?;
            AuditQuery::Since {
                chain,
                after,
                limit,
            }
        }
        b"verify" => {
            let u = usage::AUDIT_VERIFY;
            let mut heads = Vec::new();
            while let Some(option) = t.next_token()? {
                if option.as_slice() != b"head" {
                    return Err(unknown(&option, &["head"], "head"));
                }
                let head = text(&arg(t, "head", u)?)?;
                let well_formed = head.len() <= 200
                    && head.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_' | b'-')
                    });
                if !well_formed {
                    return Err(ErrorKind::BadHead);
                }
                heads.push(head);
            }
            AuditQuery::Verify { heads }
        }
        other => {
            return Err(unknown(
                other,
                &["head", "since", "verify"],
                "head, since, verify",
            ));
        }
    };
    Ok(Command::Audit(query))
}

/// A record number or a limit: digits only, at most 18 of them.
fn sequence(token: &[u8]) -> Result<u64, ErrorKind> {
    if token.is_empty() || token.len() > 18 || !token.iter().all(u8::is_ascii_digit) {
        return Err(ErrorKind::BadSequence);
    }
    Ok(decimal(token))
}

fn unknown(word: &[u8], choices: &[&'static str], expected: &'static str) -> ErrorKind {
    ErrorKind::UnknownOption {
        suggestion: suggest(word, choices.iter().copied()),
        expected,
    }
}

/// A token as text: UTF-8, not secret (a tier, a template, a label).
fn text(token: &[u8]) -> Result<String, ErrorKind> {
    String::from_utf8(token.to_vec()).map_err(|_| ErrorKind::NotText)
}

/// A token as a whole number: digits, with a `-` before them for a negative one.
fn number(token: &[u8]) -> Result<i64, ErrorKind> {
    let digits = token.strip_prefix(b"-").unwrap_or(token);
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ErrorKind::BadNumber);
    }
    // At most 18 digits: fits in an i64.
    let n = decimal(digits) as i64;
    Ok(if token.len() > digits.len() { -n } else { n })
}

fn arg(t: &mut Tokens<'_>, what: &'static str, usage: &'static str) -> Result<Token, ErrorKind> {
    t.next_token()?
        .ok_or(ErrorKind::MissingArgument { arg: what, usage })
}

fn value(t: &mut Tokens<'_>, usage: &'static str) -> Result<Value, ErrorKind> {
    let v = arg(t, "value", usage)?;
    check_value(&v)?;
    Ok(Value::from(v))
}

/// Fails if anything follows the last argument. The extra words are not even tokenized:
/// there is one problem to report, and it is their presence.
fn end(t: &Tokens<'_>, usage: &'static str, value: bool) -> Result<(), ErrorKind> {
    if t.has_more() {
        Err(ErrorKind::TooManyArguments { usage, value })
    } else {
        Ok(())
    }
}

fn uid(token: &[u8]) -> Result<u32, ErrorKind> {
    // Digits only: str::parse would also take a leading '+'.
    if token.is_empty() || !token.iter().all(u8::is_ascii_digit) {
        return Err(ErrorKind::BadUid);
    }
    match u32::try_from(decimal(token)) {
        Ok(uid) if uid != NO_UID => Ok(uid),
        _ => Err(ErrorKind::BadUid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(line: &[u8]) -> Result<Vec<Vec<u8>>, ErrorKind> {
        let mut t = Tokens::new(line);
        let mut out = Vec::new();
        while let Some(tok) = t.next_token()? {
            out.push(tok.to_vec());
        }
        Ok(out)
    }

    fn toks(words: &[&[u8]]) -> Result<Vec<Vec<u8>>, ErrorKind> {
        Ok(words.iter().map(|w| w.to_vec()).collect())
    }

    #[test]
    fn tokenizing() {
        assert_eq!(tokens(b""), toks(&[]));
        assert_eq!(tokens(b" \t "), toks(&[]));
        assert_eq!(tokens(b"a  b\tc "), toks(&[b"a", b"b", b"c"]));
        assert_eq!(tokens(b"''"), toks(&[b""]));
        assert_eq!(tokens(b"'it''s'"), toks(&[b"it's"]));
        assert_eq!(tokens(b"ab'c d'e"), toks(&[b"abc de"]));
        assert_eq!(tokens(b"a''b"), toks(&[b"ab"]));
        assert_eq!(tokens(b"a'''b'"), toks(&[b"a'b"]));
        assert_eq!(tokens(b"'''' x"), toks(&[b"'", b"x"]));
        assert_eq!(tokens(b"'a\nb\0c'"), toks(&[b"a\nb\0c"]));
        assert_eq!(tokens(b"\xff\xfe \r"), toks(&[b"\xff\xfe", b"\r"]));
        assert_eq!(tokens(b"{3}\na b"), toks(&[b"a b"]));
        assert_eq!(tokens(b"x {3}\r\n\n\n\n y"), toks(&[b"x", b"\n\n\n", b"y"]));
        assert_eq!(tokens(b"{0}\n"), toks(&[b""]));
        assert_eq!(tokens(b"{007}\nabcdefg"), toks(&[b"abcdefg"]));
        assert_eq!(tokens(b"{ x"), toks(&[b"{", b"x"]));
        assert_eq!(tokens(b"x{3}"), toks(&[b"x{3}"]));
        assert_eq!(tokens(b"'{3}'"), toks(&[b"{3}"]));
        assert_eq!(tokens(b"{\"a\":1"), toks(&[b"{\"a\":1"]));
    }

    #[test]
    fn token_errors() {
        assert_eq!(tokens(b"'abc"), Err(ErrorKind::UnterminatedQuote));
        assert_eq!(tokens(b"a 'b''"), Err(ErrorKind::UnterminatedQuote));
        assert_eq!(tokens(b"{12x}"), Err(ErrorKind::MalformedLiteral));
        assert_eq!(tokens(b"{}"), Err(ErrorKind::MalformedLiteral));
        assert_eq!(tokens(b"{+5}"), Err(ErrorKind::MalformedLiteral));
        assert_eq!(tokens(b"{5}"), Err(ErrorKind::MalformedLiteral));
        assert_eq!(tokens(b"{\"a\":1}"), Err(ErrorKind::MalformedLiteral));
        assert_eq!(tokens(b"{3}\nabcd"), Err(ErrorKind::MalformedLiteral));
        assert_eq!(tokens(b"{3}\nab"), Err(ErrorKind::LiteralCutShort));
        assert_eq!(tokens(b"{1048577}\n"), Err(ErrorKind::LiteralTooLong));
        assert_eq!(
            tokens(b"{99999999999999999999999999}\n"),
            Err(ErrorKind::LiteralTooLong)
        );
    }

    #[test]
    fn verbs_of_prefixes() {
        assert_eq!(verb_of(b"set "), Some("set"));
        assert_eq!(verb_of(b"  'set' x"), Some("set"));
        assert_eq!(verb_of(b"set"), None);
        assert_eq!(verb_of(b"sets x"), None);
        assert_eq!(verb_of(b"'set x"), None);
        assert_eq!(verb_of(b""), None);
        assert_eq!(verb_of(b"service web manifest {9}\n"), Some("service"));
    }

    #[test]
    fn uids() {
        assert_eq!(uid(b"0"), Ok(0));
        assert_eq!(uid(b"1000"), Ok(1000));
        assert_eq!(uid(b"4294967294"), Ok(4_294_967_294));
        assert_eq!(uid(b"4294967295"), Err(ErrorKind::BadUid));
        assert_eq!(uid(b"4294967296"), Err(ErrorKind::BadUid));
        assert_eq!(uid(b"99999999999999999999999"), Err(ErrorKind::BadUid));
        assert_eq!(uid(b"+5"), Err(ErrorKind::BadUid));
        assert_eq!(uid(b"-1"), Err(ErrorKind::BadUid));
        assert_eq!(uid(b""), Err(ErrorKind::BadUid));
        assert_eq!(uid(b"0x10"), Err(ErrorKind::BadUid));
    }

    #[test]
    fn audit_queries() {
        let p = |line: &str| parse_line(line.as_bytes()).map(Option::unwrap);
        assert_eq!(p("audit head"), Ok(Command::Audit(AuditQuery::Head)));
        assert_eq!(
            p("audit since 12"),
            Ok(Command::Audit(AuditQuery::Since {
                chain: None,
                after: 12,
                limit: None
            }))
        );
        let since = Command::Audit(AuditQuery::Since {
            chain: Some("opens".into()),
            after: 0,
            limit: Some(50),
        });
        assert_eq!(p("audit since opens 0 limit 50"), Ok(since.clone()));
        assert_eq!(
            p(std::str::from_utf8(&since.encode()).unwrap().trim_end()),
            Ok(since)
        );
        let head = format!("changes:3:{}", "ab".repeat(32));
        let verify = Command::Audit(AuditQuery::Verify {
            heads: vec![head.clone(), "7:00".into()],
        });
        assert_eq!(
            p(&format!("audit verify head {head} head 7:00")),
            Ok(verify.clone())
        );
        assert_eq!(
            p(std::str::from_utf8(&verify.encode()).unwrap().trim_end()),
            Ok(verify)
        );
        assert!(matches!(
            p("audit since x"),
            Err((_, ErrorKind::MissingArgument { .. }))
        ));
        assert!(matches!(
            p("audit since opens x"),
            Err((_, ErrorKind::BadSequence))
        ));
        assert_eq!(
            p("audit since 1 limit x").unwrap_err().1,
            ErrorKind::BadSequence
        );
        assert_eq!(
            p("audit verify head 'a b'").unwrap_err().1,
            ErrorKind::BadHead
        );
        assert!(matches!(
            p("audit frob"),
            Err((_, ErrorKind::UnknownOption { .. }))
        ));
        assert!(p("audit head").unwrap().is_query());
    }

    #[test]
    fn every_verb_parses_to_its_command() {
        for verb in VERBS {
            // The shortest line each verb takes.
            let line = match verb.word {
                command::SET => "set a b",
                command::DELETE => "delete a",
                command::GRANT => "grant s a",
                command::REVOKE => "revoke s a",
                command::REVOKE_ALL => "revoke-all a",
                command::SERVICE => "service s remove",
                "tier" => "tier remove t",
                "meta" => "meta a",
                "strategy" => "strategy a tier t strip",
                "present" => "present a tier t no",
                "generate" => "generate a",
                "plan" => "plan s t",
                "catalog" => "catalog export",
                "bundle" => "bundle list",
                "stage" => "stage a b",
                "promote" => "promote a",
                "discard" => "discard a",
                "rollback" => "rollback a",
                "retire" => "retire a",
                "history" => "history a",
                "holders" => "holders a",
                "rotation" => "rotation a",
                "reason" => "reason x",
                "audit" => "audit head",
                "token" => "token list",
                other => other,
            };
            let parsed = parse_line(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e:?}"));
            assert_eq!(parsed.map(|c| c.verb()), Some(verb.word), "{line}");
        }
        assert_eq!(
            parse_line(b"begin now"),
            Err((
                Some("begin"),
                ErrorKind::TooManyArguments {
                    usage: "begin",
                    value: false
                }
            ))
        );
    }

    #[test]
    fn lines() {
        assert_eq!(parse_line(b""), Ok(None));
        assert_eq!(parse_line(b"  \t"), Ok(None));
        assert_eq!(parse_line(b"rotate-key"), Ok(Some(Command::RotateKey)));
        assert_eq!(
            parse_line(b" set  a 'b c' "),
            Ok(Some(Command::Set {
                name: "a".into(),
                value: Value::from(b"b c".to_vec())
            }))
        );
        assert_eq!(
            parse_line(b"set a"),
            Err((
                Some("set"),
                ErrorKind::MissingArgument {
                    arg: "value",
                    usage: usage::SET
                }
            ))
        );
        assert_eq!(
            parse_line(b"bogus 'unterminated"),
            Err((None, ErrorKind::UnknownCommand { suggestion: None }))
        );
    }
}
