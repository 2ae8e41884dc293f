//! [`Command`], the name rule, and the encoder (the client's side of the language).
//!
//! Each command is declared in two places that say everything about it: its verb's row of
//! [`VERBS`] (the word, its `help` lines, its parser, whether it joins a transaction) and
//! its arm of [`Command::args`] (the tokens it is written as). Encoding, the size it weighs
//! in a transaction and the client-side checks are made from those tokens.

use zeroize::Zeroizing;

use crate::deployment::{self, CatalogCommand, StrategyArg};
use crate::error::{ErrorKind, NameKind};
use crate::parse::{self, Tokens};
use crate::{MAX_CATALOG_LEN, MAX_VALUE_LEN, Value, is_reserved_service, is_valid_name};

pub(crate) const ABORT: &str = "abort";
pub(crate) const AUDIT: &str = "audit";
pub(crate) const BEGIN: &str = "begin";
pub(crate) const COMMIT: &str = "commit";
pub(crate) const DELETE: &str = "delete";
pub(crate) const DISCARD: &str = "discard";
pub(crate) const FREEZE: &str = "freeze";
pub(crate) const GRANT: &str = "grant";
pub(crate) const HELP: &str = "help";
pub(crate) const HISTORY: &str = "history";
pub(crate) const HOLDERS: &str = "holders";
pub(crate) const MATRIX: &str = "matrix";
pub(crate) const PROMOTE: &str = "promote";
pub(crate) const REASON: &str = "reason";
pub(crate) const RETIRE: &str = "retire";
pub(crate) const ROTATION_STATUS: &str = "rotation";
pub(crate) const REVOKE: &str = "revoke";
pub(crate) const REVOKE_ALL: &str = "revoke-all";
pub(crate) const ROLLBACK: &str = "rollback";
pub(crate) const ROTATE_KEY: &str = "rotate-key";
pub(crate) const SERVICE: &str = "service";
pub(crate) const SET: &str = "set";
pub(crate) const STAGE: &str = "stage";
pub(crate) const STALE: &str = "stale";
pub(crate) const TOKEN: &str = "token";
pub(crate) const UNFREEZE: &str = "unfreeze";

/// The principal `token create` names for the admin (no service may be called so).
pub const ADMIN_PRINCIPAL: &str = "admin";

/// The words of `service SERVICE suspend` and `service SERVICE resume`.
pub(crate) const SUSPEND: &str = "suspend";
pub(crate) const RESUME: &str = "resume";

/// The words of `promote`'s and `grant`'s options, and of `stage NAME generate`.
pub(crate) const OVERLAP: &str = "overlap";
pub(crate) const REVOKE_PREVIOUS: &str = "revoke-previous";
pub(crate) const RETIRE_WHEN_READ: &str = "retire-when-read";
pub(crate) const EXPIRES: &str = "expires";
pub(crate) const GENERATE_WORD: &str = "generate";

/// Usage lines, as errors show them: short enough that any error quoting one fits what a
/// Plan 9 client keeps ([`MAX_ERROR_LEN`](crate::MAX_ERROR_LEN)). `help` shows the
/// longer forms of [`VERBS`].
pub(crate) mod usage {
    pub(crate) const ABORT: &str = "abort";
    pub(crate) const AUDIT: &str =
        "audit (head | since [CHAIN] SEQ [limit N] | verify [head HEAD]...)";
    pub(crate) const AUDIT_HEAD: &str = "audit head";
    pub(crate) const AUDIT_SINCE: &str = "audit since [CHAIN] SEQ [limit N]";
    pub(crate) const AUDIT_VERIFY: &str = "audit verify [head [CHAIN:]SEQ:HASH]...";
    pub(crate) const BEGIN: &str = "begin";
    pub(crate) const COMMIT: &str = "commit";
    pub(crate) const HELP: &str = "help";
    pub(crate) const DELETE: &str = "delete NAME";
    pub(crate) const DISCARD: &str = "discard NAME";
    pub(crate) const FREEZE: &str = "freeze";
    pub(crate) const GRANT: &str = "grant SERVICE NAME [expires DURATION]";
    pub(crate) const HISTORY: &str = "history NAME";
    pub(crate) const HOLDERS: &str = "holders NAME";
    pub(crate) const ROTATION_STATUS: &str = "rotation NAME";
    pub(crate) const MATRIX: &str = "matrix";
    pub(crate) const PROMOTE: &str =
        "promote NAME [overlap DURATION [retire-when-read] | revoke-previous]";
    pub(crate) const REASON: &str = "reason TEXT";
    pub(crate) const RETIRE: &str = "retire NAME";
    pub(crate) const ROLLBACK: &str = "rollback NAME";
    pub(crate) const STAGE: &str = "stage NAME (VALUE | generate [TEMPLATE])";
    pub(crate) const STAGE_VALUE: &str = "stage NAME VALUE";
    pub(crate) const STAGE_GENERATE: &str = "stage NAME generate [TEMPLATE]";
    pub(crate) const STALE: &str = "stale";
    pub(crate) const REVOKE: &str = "revoke SERVICE NAME";
    pub(crate) const REVOKE_ALL: &str = "revoke-all NAME";
    pub(crate) const ROTATE_KEY: &str = "rotate-key";
    pub(crate) const SERVICE: &str =
        "service SERVICE (uid UID|manifest VALUE|tiers LIST|remove|suspend|resume)";
    pub(crate) const SERVICE_MANIFEST: &str = "service SERVICE manifest VALUE";
    pub(crate) const SERVICE_REMOVE: &str = "service SERVICE remove";
    pub(crate) const SERVICE_RESUME: &str = "service SERVICE resume";
    pub(crate) const SERVICE_SUSPEND: &str = "service SERVICE suspend";
    pub(crate) const SERVICE_TIERS: &str = "service SERVICE tiers TIER,TIER (or '' or *)";
    pub(crate) const SERVICE_UID: &str = "service SERVICE uid UID";
    pub(crate) const SET: &str = "set NAME VALUE";
    pub(crate) const TIER: &str = "tier (add TIER [core] | remove TIER)";
    pub(crate) const TIER_ADD: &str = "tier add TIER [core]";
    pub(crate) const TIER_REMOVE: &str = "tier remove TIER";
    pub(crate) const UNFREEZE: &str = "unfreeze";
    pub(crate) const TOKEN: &str = "token (create PRINCIPAL [expires DURATION] | revoke ID | list)";
    pub(crate) const TOKEN_CREATE: &str = "token create PRINCIPAL [expires DURATION]";
    pub(crate) const TOKEN_REVOKE: &str = "token revoke ID";
    pub(crate) const TOKEN_LIST: &str = "token list";
    pub(crate) const META: &str = "meta NAME [class|owner|rotate-every|description TEXT]...";
    pub(crate) const META_REMOVE: &str = "meta NAME remove";
    pub(crate) const STRATEGY: &str = "strategy NAME tier TIER [class CLASS] STRATEGY";
    pub(crate) const SERVE: &str = "strategy NAME tier TIER serve [TEMPLATE]";
    pub(crate) const STRIP: &str = "strategy NAME tier TIER strip";
    pub(crate) const GENERATE_STRATEGY: &str = "strategy NAME tier TIER generate TEMPLATE";
    pub(crate) const PROMPT: &str = "strategy NAME tier TIER prompt LABEL [OPTION VALUE]...";
    pub(crate) const DELEGATE: &str = "strategy NAME tier TIER delegate REF";
    pub(crate) const REMOVE_STRATEGY: &str = "strategy NAME tier TIER remove";
    pub(crate) const PRESENT: &str = "present NAME tier TIER (yes|no)";
    pub(crate) const GENERATE: &str = "generate NAME [TEMPLATE]";
    pub(crate) const PLAN: &str = "plan SERVICE TIER";
    pub(crate) const LINT: &str = "lint [TIER]";
    pub(crate) const CATALOG: &str = "catalog (export [toml|json] | apply [FLAG]... FILE)";
    pub(crate) const EXPORT: &str = "catalog export [toml|json]";
    pub(crate) const APPLY: &str = "catalog apply [toml|json] [FLAG]... FILE";
    pub(crate) const BUNDLE: &str = "bundle (create SERVICE TIER ID [replace]|list|identify VALUE)";
    pub(crate) const BUNDLE_CREATE: &str = "bundle create SERVICE TIER DEPLOYMENT [replace]";
    pub(crate) const BUNDLE_LIST: &str = "bundle list [deployment DEPLOYMENT] [secret NAME]";
    pub(crate) const BUNDLE_IDENTIFY: &str = "bundle identify VALUE";

    /// Every usage, for the tests that check each error's length.
    #[cfg(test)]
    pub(crate) const ALL: [&str; 63] = [
        ABORT,
        AUDIT,
        AUDIT_HEAD,
        AUDIT_SINCE,
        AUDIT_VERIFY,
        BEGIN,
        COMMIT,
        HELP,
        DELETE,
        DISCARD,
        FREEZE,
        GRANT,
        HISTORY,
        HOLDERS,
        ROTATION_STATUS,
        MATRIX,
        PROMOTE,
        REASON,
        RETIRE,
        ROLLBACK,
        STAGE,
        STAGE_VALUE,
        STAGE_GENERATE,
        STALE,
        REVOKE,
        REVOKE_ALL,
        ROTATE_KEY,
        SERVICE,
        SERVICE_MANIFEST,
        SERVICE_REMOVE,
        SERVICE_RESUME,
        SERVICE_SUSPEND,
        SERVICE_TIERS,
        SERVICE_UID,
        SET,
        TIER,
        TIER_ADD,
        TIER_REMOVE,
        UNFREEZE,
        TOKEN,
        TOKEN_CREATE,
        TOKEN_REVOKE,
        TOKEN_LIST,
        META,
        META_REMOVE,
        STRATEGY,
        SERVE,
        STRIP,
        GENERATE_STRATEGY,
        PROMPT,
        DELEGATE,
        REMOVE_STRATEGY,
        PRESENT,
        GENERATE,
        PLAN,
        LINT,
        CATALOG,
        EXPORT,
        APPLY,
        BUNDLE,
        BUNDLE_CREATE,
        BUNDLE_LIST,
        BUNDLE_IDENTIFY,
    ];
}

/// When a command runs, with respect to transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Runs {
    /// A change: alone outside a transaction, held until `commit` inside one.
    Joins,
    /// Alone, never inside a transaction: it is one of its own (`rotate-key`, a catalog
    /// apply) or reads the store as committed (a plan, the lint, an export).
    Alone,
    /// Answered by the stream itself: `begin`, `commit`, `abort`, `help`.
    Now,
}

/// A command word: what `help` shows of it, how its arguments are read, and when it runs.
pub(crate) struct Verb {
    /// The word itself.
    pub(crate) word: &'static str,
    /// Its forms, each with what it does, one line of `help` each.
    pub(crate) forms: &'static [(&'static str, &'static str)],
    /// Reads the arguments that follow the word.
    pub(crate) parse: fn(&mut Tokens<'_>) -> Result<Command, ErrorKind>,
    /// When it runs.
    pub(crate) runs: Runs,
}

/// Every command word, sorted: the one list that the parser, the "did you mean" of an
/// unknown command, `help` and the transaction rules are made from.
pub(crate) const VERBS: &[Verb] = &[
    Verb {
        word: ABORT,
        forms: &[(usage::ABORT, "discard the open transaction")],
        parse: |t| parse::no_args(t, Command::Abort, usage::ABORT),
        runs: Runs::Now,
    },
    Verb {
        word: AUDIT,
        forms: &[
            (
                usage::AUDIT_HEAD,
                "the audit's public key and each chain's last record (SEQ:HASH)",
            ),
            (
                usage::AUDIT_SINCE,
                "CHAIN's records after SEQ (changes; or opens), as JSON lines",
            ),
            (
                usage::AUDIT_VERIFY,
                "check every signature and link, and that the log reaches each HEAD",
            ),
        ],
        parse: parse::audit,
        runs: Runs::Alone,
    },
    Verb {
        word: BEGIN,
        forms: &[(
            usage::BEGIN,
            "start a transaction: what follows, up to commit, applies all or none",
        )],
        parse: |t| parse::no_args(t, Command::Begin, usage::BEGIN),
        runs: Runs::Now,
    },
    Verb {
        word: deployment::BUNDLE,
        forms: &[
            (
                usage::BUNDLE_CREATE,
                "issue DEPLOYMENT a bundle of SERVICE on TIER; answered with it, as JSON",
            ),
            (
                usage::BUNDLE_LIST,
                "the values bundles were issued (never a value), as JSON",
            ),
            (
                usage::BUNDLE_IDENTIFY,
                "the deployments VALUE (a {N} literal) was issued to, as JSON",
            ),
        ],
        parse: parse::bundle,
        runs: Runs::Alone,
    },
    Verb {
        word: deployment::CATALOG,
        forms: &[
            (
                "catalog export [toml|json]",
                "the catalog: tiers, services' tiers, secrets' metadata (no values)",
            ),
            (
                "catalog apply [toml|json] [dry-run] [prune] [with-values] FILE",
                "make the declarations of catalog FILE (a {N} literal); the diff",
            ),
        ],
        parse: parse::catalog,
        runs: Runs::Alone,
    },
    Verb {
        word: COMMIT,
        forms: &[(usage::COMMIT, "apply the open transaction")],
        parse: |t| parse::no_args(t, Command::Commit, usage::COMMIT),
        runs: Runs::Now,
    },
    Verb {
        word: DELETE,
        forms: &[(
            usage::DELETE,
            "delete a secret and its grants (its metadata stays)",
        )],
        parse: parse::delete,
        runs: Runs::Joins,
    },
    Verb {
        word: DISCARD,
        forms: &[(usage::DISCARD, "destroy NAME's pending version")],
        parse: |t| parse::name_only(t, usage::DISCARD, |name| Command::Discard { name }),
        runs: Runs::Joins,
    },
    Verb {
        word: FREEZE,
        forms: &[(
            usage::FREEZE,
            "freeze deploys: grants, services, the catalog, bundles, mounts for services",
        )],
        parse: |t| parse::no_args(t, Command::Freeze, usage::FREEZE),
        runs: Runs::Joins,
    },
    Verb {
        word: deployment::GENERATE,
        forms: &[(
            usage::GENERATE,
            "store a value made from TEMPLATE, or NAME's core-tier template; shown nowhere",
        )],
        parse: parse::generate,
        runs: Runs::Joins,
    },
    Verb {
        word: GRANT,
        forms: &[(
            usage::GRANT,
            "let SERVICE read NAME (for DURATION: 30m, 12h, 90d, ...)",
        )],
        parse: |t| parse::grant_or_revoke(t, GRANT),
        runs: Runs::Joins,
    },
    Verb {
        word: HELP,
        forms: &[(usage::HELP, "this list (read it from ctl)")],
        parse: |t| parse::no_args(t, Command::Help, usage::HELP),
        runs: Runs::Now,
    },
    Verb {
        word: HISTORY,
        forms: &[(
            usage::HISTORY,
            "NAME's versions: state, when, by whom, why (never a value), as JSON",
        )],
        parse: |t| parse::name_only(t, usage::HISTORY, |name| Command::History { name }),
        runs: Runs::Alone,
    },
    Verb {
        word: HOLDERS,
        forms: &[(
            usage::HOLDERS,
            "who holds NAME: grants (opened since rotated?), deployments, tiers, as JSON",
        )],
        parse: |t| parse::name_only(t, usage::HOLDERS, |name| Command::Holders { name }),
        runs: Runs::Alone,
    },
    Verb {
        word: ROTATION_STATUS,
        forms: &[(
            usage::ROTATION_STATUS,
            "NAME's rotation: who has opened the current version, who may read @previous",
        )],
        parse: |t| {
            parse::name_only(t, usage::ROTATION_STATUS, |name| Command::RotationStatus {
                name,
            })
        },
        runs: Runs::Alone,
    },
    Verb {
        word: deployment::LINT,
        forms: &[(
            usage::LINT,
            "what the catalog leaves undecided or broken, as JSON",
        )],
        parse: parse::lint,
        runs: Runs::Alone,
    },
    Verb {
        word: MATRIX,
        forms: &[(
            usage::MATRIX,
            "secrets by services: grants, class, owner, age, rotation period, as JSON",
        )],
        parse: |t| parse::no_args(t, Command::Matrix, usage::MATRIX),
        runs: Runs::Alone,
    },
    Verb {
        word: deployment::META,
        forms: &[
            (
                "meta NAME [class CLASS] [owner TEXT] [rotate-every DURATION] [description TEXT]",
                "set NAME's metadata ('' clears a field)",
            ),
            ("meta NAME remove", "remove NAME's metadata"),
        ],
        parse: parse::meta,
        runs: Runs::Joins,
    },
    Verb {
        word: deployment::PLAN,
        forms: &[(
            usage::PLAN,
            "what happens to each secret of SERVICE's manifest on TIER, as JSON",
        )],
        parse: parse::plan,
        runs: Runs::Alone,
    },
    Verb {
        word: deployment::PRESENT,
        forms: &[(
            "present NAME tier TIER (yes|no)",
            "whether the provider holds NAME, delegated on TIER",
        )],
        parse: parse::present,
        runs: Runs::Joins,
    },
    Verb {
        word: PROMOTE,
        forms: &[(
            usage::PROMOTE,
            "make NAME's pending version current; the old one is NAME@previous for DURATION",
        )],
        parse: parse::promote,
        runs: Runs::Joins,
    },
    Verb {
        word: REASON,
        forms: &[(
            usage::REASON,
            "why: recorded with the next change (or transaction) on this fid",
        )],
        parse: parse::reason,
        runs: Runs::Now,
    },
    Verb {
        word: RETIRE,
        forms: &[(
            usage::RETIRE,
            "destroy NAME's previous version (its overlap ends)",
        )],
        parse: |t| parse::name_only(t, usage::RETIRE, |name| Command::Retire { name }),
        runs: Runs::Joins,
    },
    Verb {
        word: REVOKE,
        forms: &[(
            usage::REVOKE,
            "stop SERVICE reading NAME, from its next read on",
        )],
        parse: |t| parse::grant_or_revoke(t, REVOKE),
        runs: Runs::Joins,
    },
    Verb {
        word: REVOKE_ALL,
        forms: &[(
            usage::REVOKE_ALL,
            "stop every service reading NAME, from its next read on",
        )],
        parse: |t| parse::name_only(t, usage::REVOKE_ALL, |name| Command::RevokeAll { name }),
        runs: Runs::Joins,
    },
    Verb {
        word: ROLLBACK,
        forms: &[(
            usage::ROLLBACK,
            "make NAME's previous version current again",
        )],
        parse: |t| parse::name_only(t, usage::ROLLBACK, |name| Command::Rollback { name }),
        runs: Runs::Joins,
    },
    Verb {
        word: ROTATE_KEY,
        forms: &[(
            usage::ROTATE_KEY,
            "re-encrypt every secret under a new cluster key",
        )],
        parse: |t| parse::no_args(t, Command::RotateKey, usage::ROTATE_KEY),
        runs: Runs::Alone,
    },
    Verb {
        word: SERVICE,
        forms: &[
            (usage::SERVICE_UID, "add SERVICE, or map it to another uid"),
            (usage::SERVICE_MANIFEST, "replace SERVICE's manifest"),
            (
                "service SERVICE tiers TIER,TIER",
                "the tiers SERVICE is deployed to ('' none, * every tier)",
            ),
            (usage::SERVICE_REMOVE, "remove SERVICE and its grants"),
            (
                usage::SERVICE_SUSPEND,
                "every read through SERVICE's view fails, open files too; grants stay",
            ),
            (usage::SERVICE_RESUME, "SERVICE's reads work again"),
        ],
        parse: parse::service,
        runs: Runs::Joins,
    },
    Verb {
        word: SET,
        forms: &[(usage::SET, "store a secret (a new version)")],
        parse: parse::set,
        runs: Runs::Joins,
    },
    Verb {
        word: STAGE,
        forms: &[
            (
                usage::STAGE_VALUE,
                "a new version of NAME, pending: NAME@pending to its grantees, for an hour",
            ),
            (
                usage::STAGE_GENERATE,
                "the same, made from TEMPLATE or NAME's core-tier template",
            ),
        ],
        parse: parse::stage,
        runs: Runs::Joins,
    },
    Verb {
        word: STALE,
        forms: &[(
            usage::STALE,
            "secrets older than their rotation period, as JSON",
        )],
        parse: |t| parse::no_args(t, Command::Stale, usage::STALE),
        runs: Runs::Alone,
    },
    Verb {
        word: deployment::STRATEGY,
        forms: &[
            (
                "strategy NAME tier TIER [class CLASS] serve [TEMPLATE]",
                "served by the core server (core tiers only)",
            ),
            (
                "strategy NAME tier TIER [class CLASS] strip",
                "never leaves the core server",
            ),
            (
                "strategy NAME tier TIER [class CLASS] generate TEMPLATE",
                "made fresh per deployment",
            ),
            (
                "strategy NAME tier TIER [class CLASS] prompt LABEL [help TEXT] [kind KIND] \
                 [pattern RE] [min N] [max N] [optional]",
                "asked at first run",
            ),
            (
                "strategy NAME tier TIER [class CLASS] delegate REF",
                "held by a provider (github:O/R#NAME, env:NAME, ...)",
            ),
            ("strategy NAME tier TIER remove", "no strategy on TIER"),
        ],
        parse: parse::strategy,
        runs: Runs::Joins,
    },
    Verb {
        word: deployment::TIER,
        forms: &[
            (
                "tier add TIER [core]",
                "declare a deployment tier (core: the core server itself)",
            ),
            (usage::TIER_REMOVE, "remove a tier nothing names"),
        ],
        parse: parse::tier,
        runs: Runs::Joins,
    },
    Verb {
        word: TOKEN,
        forms: &[
            (
                usage::TOKEN_CREATE,
                "a token proving PRINCIPAL (admin or a SERVICE) over TCP or TLS; shown once",
            ),
            (
                usage::TOKEN_REVOKE,
                "refuse token ID from now on, and close the connections it opened",
            ),
            (
                usage::TOKEN_LIST,
                "every token: ID, principal, made, ends, state (never a token), as JSON",
            ),
        ],
        parse: parse::token,
        runs: Runs::Alone,
    },
    Verb {
        word: UNFREEZE,
        forms: &[(usage::UNFREEZE, "unfreeze deploys")],
        parse: |t| parse::no_args(t, Command::Unfreeze, usage::UNFREEZE),
        runs: Runs::Joins,
    },
];

/// The row of `word` in [`VERBS`].
pub(crate) fn verb(word: &str) -> Option<&'static Verb> {
    VERBS.iter().find(|v| v.word == word)
}

/// The text `help` answers with: one line per form of each command, and what it does.
pub fn help_text() -> String {
    let forms = VERBS.iter().flat_map(|v| v.forms.iter());
    let width = forms
        .clone()
        .map(|(usage, _)| usage.len())
        .filter(|&n| n <= HELP_COLUMN)
        .max()
        .unwrap_or(0);
    forms
        .map(|(usage, what)| {
            if usage.len() <= HELP_COLUMN {
                format!("{usage:width$}  {what}\n")
            } else {
                // A form too long to line up with the others: its text on the next line.
                format!("{usage}\n{:width$}  {what}\n", "")
            }
        })
        .collect()
}

/// The widest form `help` lines up the others with.
const HELP_COLUMN: usize = 56;

/// The uid that Plan 9 and Linux use for "no uid"; `service … uid` refuses it.
pub const NO_UID: u32 = u32::MAX;

/// One ctl command, as parsed from a line or to be encoded into one.
///
/// `Debug` is safe to log: names are not secret, and a [`Value`] shows only its length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `set NAME VALUE`: create or replace a secret.
    Set {
        /// The secret's name.
        name: String,
        /// The secret's value.
        value: Value,
    },
    /// `delete NAME`: remove a secret.
    Delete {
        /// The secret's name.
        name: String,
    },
    /// `grant SERVICE NAME [expires DURATION]`: let a service read a secret, for good or
    /// for a while.
    Grant {
        /// The service's name.
        service: String,
        /// The secret's name.
        name: String,
        /// How long the grant lasts, in seconds (`None`: until revoked).
        expires: Option<u64>,
    },
    /// `stage NAME VALUE`: a new version of a secret, pending.
    Stage {
        /// The secret's name.
        name: String,
        /// The new version's value.
        value: Value,
    },
    /// `stage NAME generate [TEMPLATE]`: a new version made on the server, pending.
    StageGenerate {
        /// The secret's name.
        name: String,
        /// The template (`None`: the secret's core-tier template).
        template: Option<String>,
    },
    /// `promote NAME [overlap DURATION [retire-when-read] | revoke-previous]`: the pending
    /// version current.
    Promote {
        /// The secret's name.
        name: String,
        /// How long services may still read the version it replaces, in seconds.
        overlap: Option<u64>,
        /// Destroy the version it replaces and cut off its readers.
        revoke_previous: bool,
        /// Retire the version it replaces once every service granted the secret has
        /// opened the new one, or at the overlap's end (needs an overlap).
        retire_when_read: bool,
    },
    /// `discard NAME`: destroy the pending version.
    Discard {
        /// The secret's name.
        name: String,
    },
    /// `rollback NAME`: the previous version current again.
    Rollback {
        /// The secret's name.
        name: String,
    },
    /// `retire NAME`: destroy the previous version.
    Retire {
        /// The secret's name.
        name: String,
    },
    /// `history NAME`: the secret's versions, as JSON.
    History {
        /// The secret's name.
        name: String,
    },
    /// `holders NAME`: everyone a rotation or revoke of the secret must reach, as JSON.
    Holders {
        /// The secret's name.
        name: String,
    },
    /// `rotation NAME`: who has opened the secret's current version and who may
    /// still read the previous one, as JSON.
    RotationStatus {
        /// The secret's name.
        name: String,
    },
    /// `stale`: the secrets older than their rotation period, as JSON.
    Stale,
    /// `reason TEXT`: why the next change (or transaction) on this fid is made.
    Reason {
        /// The reason: UTF-8, at most [`MAX_REASON_LEN`](model::MAX_REASON_LEN) bytes,
        /// no control characters.
        text: String,
    },
    /// `revoke SERVICE NAME`: stop a service reading a secret.
    Revoke {
        /// The service's name.
        service: String,
        /// The secret's name.
        name: String,
    },
    /// `rotate-key`: re-encrypt every secret under a new cluster key.
    RotateKey,
    /// `begin`: the commands that follow, up to `commit`, apply all or none.
    Begin,
    /// `commit`: apply the open transaction.
    Commit,
    /// `abort`: discard the open transaction.
    Abort,
    /// `help`: answer with the list of commands.
    Help,
    /// `service SERVICE uid UID`: add a service, or change the uid that maps to it.
    ServiceUid {
        /// The service's name.
        service: String,
        /// The peer uid that authenticates as this service (never [`NO_UID`]).
        uid: u32,
    },
    /// `service SERVICE manifest VALUE`: replace a service's manifest (its whole text).
    ServiceManifest {
        /// The service's name.
        service: String,
        /// The manifest's text, unparsed.
        manifest: Value,
    },
    /// `service SERVICE remove`: remove a service and its grants.
    ServiceRemove {
        /// The service's name.
        service: String,
    },
    /// `service SERVICE suspend`: every read through the service's view fails, of files
    /// held open too; its grants stay.
    ServiceSuspend {
        /// The service's name.
        service: String,
    },
    /// `service SERVICE resume`: the service's reads work again.
    ServiceResume {
        /// The service's name.
        service: String,
    },
    /// `freeze`: freeze deploys (grants, service changes, the catalog, bundles, the
    /// admin's mounts of a service's view) until `unfreeze`.
    Freeze,
    /// `unfreeze`: deploys go on.
    Unfreeze,
    /// `revoke-all NAME`: stop every service reading a secret.
    RevokeAll {
        /// The secret's name.
        name: String,
    },
    /// `matrix`: every secret by every service, with the grants, as JSON.
    Matrix,
    /// A command of the deployment catalog.
    Catalog(CatalogCommand),
    /// `audit ...`: a question about the audit trail.
    Audit(AuditQuery),
    /// `token create PRINCIPAL [expires DURATION]`: an API token for the admin or a
    /// service, answered once (as the answer's body) and kept nowhere.
    TokenCreate {
        /// [`ADMIN_PRINCIPAL`] or a service's name.
        principal: String,
        /// How long it holds, in seconds (`None`: until revoked).
        expires: Option<u64>,
    },
    /// `token revoke ID`: refuse a token from now on, and close its connections.
    TokenRevoke {
        /// The token's ID (16 hex digits).
        id: String,
    },
    /// `token list`: every token's facts, never a token, as JSON.
    TokenList,
}

/// What `audit` asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditQuery {
    /// `audit head`: the public key and each chain's last record.
    Head,
    /// `audit since [CHAIN] SEQ [limit N]`: a chain's records after record SEQ.
    Since {
        /// The chain (`None`: `changes`).
        chain: Option<String>,
        /// The records after this one (0: from the first).
        after: u64,
        /// At most this many (`None`: the server's default).
        limit: Option<u64>,
    },
    /// `audit verify [head HEAD]...`: every signature and link, and the heads given.
    Verify {
        /// Heads recorded elsewhere, `[CHAIN:]SEQ:HASH`.
        heads: Vec<String>,
    },
}

/// One token of a command as it is written.
pub(crate) enum Arg<'a> {
    /// A word of the grammar: the verb, an action, an option.
    Word(&'static str),
    /// A secret's name.
    Name(&'a str),
    /// A service's name.
    Service(&'a str),
    /// Other text (a tier, a class, a template, a label): bare if harmless, else quoted.
    Text(&'a str),
    /// Text made for the occasion (a number, a list of tiers).
    Owned(String),
    /// A uid.
    Uid(u32),
    /// A deployment's id: the name rule.
    Deployment(&'a str),
    /// Whom a token proves: [`ADMIN_PRINCIPAL`] or a service's name.
    Principal(&'a str),
    /// A token's ID: 16 hex digits.
    TokenId(&'a str),
    /// A value: always a `{N}` literal.
    Value(&'a Value),
    /// A catalog file: a `{N}` literal of up to [`MAX_CATALOG_LEN`] bytes.
    File(&'a Value),
}

impl Arg<'_> {
    /// The bytes it stands for.
    fn bytes(&self) -> &[u8] {
        match self {
            Arg::Word(w) => w.as_bytes(),
            Arg::Name(s)
            | Arg::Service(s)
            | Arg::Text(s)
            | Arg::Deployment(s)
            | Arg::Principal(s)
            | Arg::TokenId(s) => s.as_bytes(),
            Arg::Owned(s) => s.as_bytes(),
            Arg::Uid(_) => b"4294967295",
            Arg::Value(v) | Arg::File(v) => v.expose(),
        }
    }
}

impl Command {
    /// The tokens the command is written as, verb first.
    pub(crate) fn args(&self) -> Vec<Arg<'_>> {
        use Arg::{File, Name, Owned, Service, Text, Uid, Word};
        match self {
            Command::Set { name, value } => vec![Word(SET), Name(name), Arg::Value(value)],
            Command::Delete { name } => vec![Word(DELETE), Name(name)],
            Command::Grant {
                service,
                name,
                expires,
            } => {
                let mut a = vec![Word(GRANT), Service(service), Name(name)];
                if let Some(secs) = expires {
                    a.extend([Word(EXPIRES), Owned(model::format_duration(*secs))]);
                }
                a
            }
            Command::Stage { name, value } => vec![Word(STAGE), Name(name), Arg::Value(value)],
            Command::StageGenerate { name, template } => {
                let mut a = vec![Word(STAGE), Name(name), Word(GENERATE_WORD)];
                if let Some(t) = template {
                    a.push(Text(t));
                }
                a
            }
            Command::Promote {
                name,
                overlap,
                revoke_previous,
                retire_when_read,
            } => {
                let mut a = vec![Word(PROMOTE), Name(name)];
                if let Some(secs) = overlap {
                    a.extend([Word(OVERLAP), Owned(model::format_duration(*secs))]);
                }
                if *revoke_previous {
                    a.push(Word(REVOKE_PREVIOUS));
                }
                if *retire_when_read {
                    a.push(Word(RETIRE_WHEN_READ));
                }
                a
            }
            Command::Discard { name } => vec![Word(DISCARD), Name(name)],
            Command::Rollback { name } => vec![Word(ROLLBACK), Name(name)],
            Command::Retire { name } => vec![Word(RETIRE), Name(name)],
            Command::History { name } => vec![Word(HISTORY), Name(name)],
            Command::Holders { name } => vec![Word(HOLDERS), Name(name)],
            Command::RotationStatus { name } => vec![Word(ROTATION_STATUS), Name(name)],
            Command::Stale => vec![Word(STALE)],
            Command::Reason { text } => vec![Word(REASON), Text(text)],
            Command::Revoke { service, name } => vec![Word(REVOKE), Service(service), Name(name)],
            Command::RotateKey => vec![Word(ROTATE_KEY)],
            Command::Begin => vec![Word(BEGIN)],
            Command::Commit => vec![Word(COMMIT)],
            Command::Abort => vec![Word(ABORT)],
            Command::Help => vec![Word(HELP)],
            Command::ServiceUid { service, uid } => {
                vec![Word(SERVICE), Service(service), Word("uid"), Uid(*uid)]
            }
            Command::ServiceManifest { service, manifest } => vec![
                Word(SERVICE),
                Service(service),
                Word("manifest"),
                Arg::Value(manifest),
            ],
            Command::ServiceRemove { service } => {
                vec![Word(SERVICE), Service(service), Word("remove")]
            }
            Command::ServiceSuspend { service } => {
                vec![Word(SERVICE), Service(service), Word(SUSPEND)]
            }
            Command::ServiceResume { service } => {
                vec![Word(SERVICE), Service(service), Word(RESUME)]
            }
            Command::Freeze => vec![Word(FREEZE)],
            Command::Unfreeze => vec![Word(UNFREEZE)],
            Command::RevokeAll { name } => vec![Word(REVOKE_ALL), Name(name)],
            Command::Matrix => vec![Word(MATRIX)],
            Command::TokenCreate { principal, expires } => {
                let mut a = vec![Word(TOKEN), Word("create"), Arg::Principal(principal)];
                if let Some(secs) = expires {
                    a.extend([Word(EXPIRES), Owned(model::format_duration(*secs))]);
                }
                a
            }
            Command::TokenRevoke { id } => vec![Word(TOKEN), Word("revoke"), Arg::TokenId(id)],
            Command::TokenList => vec![Word(TOKEN), Word("list")],
            Command::Audit(q) => match q {
                AuditQuery::Head => vec![Word(AUDIT), Word("head")],
                AuditQuery::Since {
                    chain,
                    after,
                    limit,
                } => {
                    let mut a = vec![Word(AUDIT), Word("since")];
                    if let Some(c) = chain {
                        a.push(Name(c));
                    }
                    a.push(Owned(after.to_string()));
                    if let Some(n) = limit {
                        a.extend([Word("limit"), Owned(n.to_string())]);
                    }
                    a
                }
                AuditQuery::Verify { heads } => {
                    let mut a = vec![Word(AUDIT), Word("verify")];
                    for h in heads {
                        a.extend([Word("head"), Text(h)]);
                    }
                    a
                }
            },
            Command::Catalog(c) => match c {
                CatalogCommand::TierAdd { tier, core } => {
                    let mut a = vec![Word(deployment::TIER), Word("add"), Text(tier)];
                    if *core {
                        a.push(Word("core"));
                    }
                    a
                }
                CatalogCommand::TierRemove { tier } => {
                    vec![Word(deployment::TIER), Word("remove"), Text(tier)]
                }
                CatalogCommand::Meta { name, fields } => {
                    let mut a = vec![Word(deployment::META), Name(name)];
                    for (option, text) in fields.options() {
                        if let Some(text) = text {
                            a.extend([Word(option), Text(text)]);
                        }
                    }
                    a
                }
                CatalogCommand::MetaRemove { name } => {
                    vec![Word(deployment::META), Name(name), Word("remove")]
                }
                CatalogCommand::Strategy {
                    name,
                    tier,
                    class,
                    strategy,
                } => {
                    let mut a = vec![
                        Word(deployment::STRATEGY),
                        Name(name),
                        Word("tier"),
                        Text(tier),
                    ];
                    if let Some(class) = class {
                        a.extend([Word(deployment::CLASS), Text(class)]);
                    }
                    strategy_args(strategy, &mut a);
                    a
                }
                CatalogCommand::Present {
                    name,
                    tier,
                    present,
                } => vec![
                    Word(deployment::PRESENT),
                    Name(name),
                    Word("tier"),
                    Text(tier),
                    Word(if *present { "yes" } else { "no" }),
                ],
                CatalogCommand::ServiceTiers { service, tiers } => vec![
                    Word(SERVICE),
                    Service(service),
                    Word("tiers"),
                    match tiers {
                        Some(t) => Owned(t.join(",")),
                        None => Word("*"),
                    },
                ],
                CatalogCommand::Generate { name, template } => {
                    let mut a = vec![Word(deployment::GENERATE), Name(name)];
                    if let Some(t) = template {
                        a.push(Text(t));
                    }
                    a
                }
                CatalogCommand::Plan { service, tier } => {
                    vec![Word(deployment::PLAN), Service(service), Text(tier)]
                }
                CatalogCommand::Lint { tier } => {
                    let mut a = vec![Word(deployment::LINT)];
                    if let Some(t) = tier {
                        a.push(Text(t));
                    }
                    a
                }
                CatalogCommand::Export { format } => {
                    vec![
                        Word(deployment::CATALOG),
                        Word("export"),
                        Word(format.as_str()),
                    ]
                }
                CatalogCommand::BundleCreate {
                    service,
                    tier,
                    deployment,
                    replace,
                } => {
                    let mut a = vec![
                        Word(deployment::BUNDLE),
                        Word("create"),
                        Service(service),
                        Text(tier),
                        Arg::Deployment(deployment),
                    ];
                    if *replace {
                        a.push(Word("replace"));
                    }
                    a
                }
                CatalogCommand::BundleList {
                    deployment: id,
                    secret,
                } => {
                    let mut a = vec![Word(deployment::BUNDLE), Word("list")];
                    if let Some(id) = id {
                        a.extend([Word("deployment"), Arg::Deployment(id)]);
                    }
                    if let Some(secret) = secret {
                        a.extend([Word("secret"), Name(secret)]);
                    }
                    a
                }
                CatalogCommand::BundleIdentify { value } => vec![
                    Word(deployment::BUNDLE),
                    Word("identify"),
                    Arg::Value(value),
                ],
                CatalogCommand::Apply {
                    format,
                    file,
                    dry_run,
                    prune,
                    with_values,
                } => {
                    let mut a = vec![Word(deployment::CATALOG), Word("apply")];
                    if let Some(f) = format {
                        a.push(Word(f.as_str()));
                    }
                    for (flag, on) in
                        deployment::APPLY_FLAGS
                            .iter()
                            .zip([*dry_run, *prune, *with_values])
                    {
                        if on {
                            a.push(Word(flag));
                        }
                    }
                    a.push(File(file));
                    a
                }
            },
        }
    }

    /// The command's first word (`service` for every service action), for errors and
    /// logs.
    pub fn verb(&self) -> &'static str {
        match self.args().first() {
            Some(Arg::Word(w)) => w,
            // Every command's tokens start with its verb.
            _ => HELP,
        }
    }

    /// Whether the command changes the store (and so can be part of a transaction, or
    /// must wait for one to end). `catalog` is one, though `catalog apply dry-run` and
    /// `catalog export` change nothing.
    pub fn is_change(&self) -> bool {
        !matches!(self.runs(), Runs::Now) && !self.is_query()
    }

    /// Whether the command only reads the store and answers with a body: `history`,
    /// `stale`, `matrix`, `plan`, `lint`, `catalog export`, `catalog apply dry-run`,
    /// `bundle list`, `bundle identify`.
    /// (`bundle create` answers with a body too, and is a change: it records the bundle.)
    pub fn is_query(&self) -> bool {
        matches!(
            self,
            Command::History { .. }
                | Command::Holders { .. }
                | Command::RotationStatus { .. }
                | Command::Stale
                | Command::Matrix
                | Command::Audit(_)
                | Command::TokenList
        ) || matches!(
            self,
            Command::Catalog(
                CatalogCommand::Plan { .. }
                    | CatalogCommand::Lint { .. }
                    | CatalogCommand::Export { .. }
                    | CatalogCommand::Apply { dry_run: true, .. }
                    | CatalogCommand::BundleList { .. }
                    | CatalogCommand::BundleIdentify { .. }
            )
        )
    }

    /// When the command runs, with respect to transactions.
    pub(crate) fn runs(&self) -> Runs {
        verb(self.verb()).map_or(Runs::Joins, |v| v.runs)
    }

    /// About how many bytes the command holds, for the bound on a transaction: its value
    /// and names, plus a little for the words around them.
    pub fn weight(&self) -> usize {
        const WORDS: usize = 32;
        WORDS
            + self
                .args()
                .iter()
                .skip(1)
                .filter(|a| !matches!(a, Arg::Word(_)))
                .map(|a| a.bytes().len())
                .sum::<usize>()
    }

    /// Checks the command as the parser would: names, reserved services, the uid and value
    /// sizes. A client calls this to report a bad argument before sending anything; format
    /// the error as `"{verb}: {kind}"`. (What the catalog's words mean, a tier's name or a
    /// template, is for the catalog to check.)
    ///
    /// # Errors
    /// The [`ErrorKind`] the server would answer with.
    pub fn validate(&self) -> Result<(), ErrorKind> {
        if let Command::Reason { text } = self
            && !parse::is_reason(text)
        {
            return Err(ErrorKind::BadReason);
        }
        if let Command::Promote {
            overlap: Some(_),
            revoke_previous: true,
            ..
        } = self
        {
            return Err(ErrorKind::OverlapAndRevoke);
        }
        if let Command::Promote {
            overlap: None,
            retire_when_read: true,
            ..
        } = self
        {
            return Err(ErrorKind::RetireWhenReadWithoutOverlap);
        }
        for arg in self.args() {
            match arg {
                Arg::Name(name) => {
                    check_name(name.as_bytes())?;
                }
                Arg::Service(service) => {
                    check_service(service.as_bytes())?;
                }
                Arg::Deployment(id) => {
                    check_deployment(id.as_bytes())?;
                }
                Arg::Principal(p) => {
                    check_principal(p.as_bytes())?;
                }
                Arg::TokenId(id) => {
                    check_token_id(id.as_bytes())?;
                }
                Arg::Uid(NO_UID) => return Err(ErrorKind::BadUid),
                Arg::Value(v) => check_value(v.expose())?,
                Arg::File(v) if v.len() > MAX_CATALOG_LEN => {
                    return Err(ErrorKind::CatalogTooLarge);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The command as one complete line, ending in `\n`: names and words bare (quoted
    /// when they are not harmless words: a template, a label), values as `{N}` literals,
    /// so any bytes travel safely and `parse(encode(c)) == c` for every command that
    /// passes [`validate`](Command::validate).
    ///
    /// A name that breaks the name rule is sent quoted, so that the server rejects it with
    /// "invalid name" instead of reading it as more words or lines: encoding never lets a
    /// name inject a command.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let args = self.args();
        // Sized up front so that the buffer never reallocates: a reallocation would leave
        // a copy of the value in freed memory.
        let capacity = args
            .iter()
            .map(|a| match a {
                Arg::Value(v) | Arg::File(v) => format!("{{{}}}\n", v.len()).len() + v.len() + 1,
                Arg::Uid(_) => 11,
                other => 2 * other.bytes().len() + 3,
            })
            .sum::<usize>()
            + 1;
        let mut out = Zeroizing::new(Vec::with_capacity(capacity));
        for (i, arg) in args.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            match arg {
                Arg::Value(v) | Arg::File(v) => {
                    out.extend_from_slice(format!("{{{}}}\n", v.len()).as_bytes());
                    out.extend_from_slice(v.expose());
                }
                Arg::Uid(uid) => out.extend_from_slice(uid.to_string().as_bytes()),
                other => put_word(&mut out, other.bytes()),
            }
        }
        out.push(b'\n');
        out
    }
}

/// The tokens of a strategy, after `strategy NAME tier TIER [class CLASS]`.
fn strategy_args<'a>(strategy: &'a StrategyArg, a: &mut Vec<Arg<'a>>) {
    use Arg::{Owned, Text, Word};
    match strategy {
        StrategyArg::Serve { template } => {
            a.push(Word("serve"));
            if let Some(t) = template {
                a.push(Text(t));
            }
        }
        StrategyArg::Strip => a.push(Word("strip")),
        StrategyArg::Generate { template } => a.extend([Word("generate"), Text(template)]),
        StrategyArg::Prompt(p) => {
            a.extend([Word("prompt"), Text(&p.label)]);
            for (option, text) in [
                ("help", p.help.as_deref()),
                ("kind", p.kind.as_deref()),
                ("pattern", p.pattern.as_deref()),
            ] {
                if let Some(text) = text {
                    a.extend([Word(option), Text(text)]);
                }
            }
            for (option, n) in [("min", p.min), ("max", p.max)] {
                if let Some(n) = n {
                    a.extend([Word(option), Owned(n.to_string())]);
                }
            }
            if p.optional {
                a.push(Word("optional"));
            }
        }
        StrategyArg::Delegate { reference } => a.extend([Word("delegate"), Text(reference)]),
        StrategyArg::Remove => a.push(Word("remove")),
    }
}

/// Appends `word` bare if it is a harmless bare word (the bytes of names, and the `,` and
/// `*` of lists and patterns), else quoted.
fn put_word(out: &mut Vec<u8>, word: &[u8]) {
    let bare = !word.is_empty()
        && word
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b',' | b'*'));
    if bare {
        out.extend_from_slice(word);
        return;
    }
    out.push(b'\'');
    for &b in word {
        if b == b'\'' {
            out.push(b'\'');
        }
        out.push(b);
    }
    out.push(b'\'');
}

/// The name rule ([`is_valid_name`]) over a token's bytes: a name is ASCII, so bytes
/// that are not UTF-8 are not one.
fn valid_name(name: &[u8]) -> bool {
    std::str::from_utf8(name).is_ok_and(is_valid_name)
}

/// Checks a secret name, returning it as a `String` (it is ASCII once checked).
pub(crate) fn check_name(name: &[u8]) -> Result<String, ErrorKind> {
    checked(name, NameKind::Secret)
}

/// Checks a deployment's id (the name rule).
pub(crate) fn check_deployment(id: &[u8]) -> Result<String, ErrorKind> {
    checked(id, NameKind::Deployment)
}

/// Checks whom a token is for: [`ADMIN_PRINCIPAL`], or a service's name.
pub(crate) fn check_principal(principal: &[u8]) -> Result<String, ErrorKind> {
    if principal == ADMIN_PRINCIPAL.as_bytes() {
        return Ok(ADMIN_PRINCIPAL.to_string());
    }
    check_service(principal)
}

/// Checks a token's ID: 16 lowercase hex digits.
pub(crate) fn check_token_id(id: &[u8]) -> Result<String, ErrorKind> {
    let hex = id.len() == 16 && id.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    match std::str::from_utf8(id) {
        Ok(id) if hex => Ok(id.to_string()),
        _ => Err(ErrorKind::BadTokenId),
    }
}

/// Checks a service name, reserved names included.
pub(crate) fn check_service(service: &[u8]) -> Result<String, ErrorKind> {
    let service = checked(service, NameKind::Service)?;
    if is_reserved_service(&service) {
        return Err(ErrorKind::ReservedService);
    }
    Ok(service)
}

fn checked(name: &[u8], kind: NameKind) -> Result<String, ErrorKind> {
    if !valid_name(name) {
        return Err(ErrorKind::InvalidName(kind));
    }
    // Only ASCII passed the check above, so this conversion cannot fail.
    String::from_utf8(name.to_vec()).map_err(|_| ErrorKind::InvalidName(kind))
}

/// Checks a value's length.
pub(crate) fn check_value(value: &[u8]) -> Result<(), ErrorKind> {
    if value.len() > MAX_VALUE_LEN {
        Err(ErrorKind::ValueTooLong)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(c: &Command) -> Vec<u8> {
        c.encode().to_vec()
    }

    #[test]
    fn encodes_every_command() {
        let v = |b: &[u8]| Value::from(b.to_vec());
        assert_eq!(
            enc(&Command::Set {
                name: "cert".into(),
                value: v(b"ab\ncd")
            }),
            b"set cert {5}\nab\ncd\n"
        );
        assert_eq!(
            enc(&Command::Set {
                name: "e".into(),
                value: v(b"")
            }),
            b"set e {0}\n\n"
        );
        assert_eq!(enc(&Command::Delete { name: "a".into() }), b"delete a\n");
        assert_eq!(
            enc(&Command::Grant {
                service: "web".into(),
                name: "db_password".into(),
                expires: None,
            }),
            b"grant web db_password\n"
        );
        assert_eq!(
            enc(&Command::Revoke {
                service: "web".into(),
                name: "db.password-2".into()
            }),
            b"revoke web db.password-2\n"
        );
        assert_eq!(enc(&Command::RotateKey), b"rotate-key\n");
        assert_eq!(
            enc(&Command::ServiceUid {
                service: "web".into(),
                uid: 1000
            }),
            b"service web uid 1000\n"
        );
        assert_eq!(
            enc(&Command::ServiceManifest {
                service: "web".into(),
                manifest: v(b"secret a\n")
            }),
            b"service web manifest {9}\nsecret a\n\n"
        );
        assert_eq!(
            enc(&Command::ServiceRemove {
                service: "web".into()
            }),
            b"service web remove\n"
        );
        assert_eq!(
            enc(&Command::ServiceSuspend {
                service: "web".into()
            }),
            b"service web suspend\n"
        );
        assert_eq!(
            enc(&Command::ServiceResume {
                service: "web".into()
            }),
            b"service web resume\n"
        );
        assert_eq!(enc(&Command::Freeze), b"freeze\n");
        assert_eq!(enc(&Command::Unfreeze), b"unfreeze\n");
        assert_eq!(
            enc(&Command::RevokeAll { name: "db".into() }),
            b"revoke-all db\n"
        );
        assert_eq!(enc(&Command::Matrix), b"matrix\n");
        let holders = Command::Holders { name: "db".into() };
        assert_eq!(enc(&holders), b"holders db\n");
        assert!(holders.is_query() && !holders.is_change());
        let status = Command::RotationStatus { name: "db".into() };
        assert_eq!(enc(&status), b"rotation db\n");
        assert!(status.is_query() && !status.is_change());
        assert!(Command::Matrix.is_query() && !Command::Matrix.is_change());
        for change in [
            Command::Freeze,
            Command::Unfreeze,
            Command::RevokeAll { name: "db".into() },
            Command::ServiceSuspend {
                service: "web".into(),
            },
        ] {
            assert!(change.is_change() && !change.is_query(), "{change:?}");
        }
    }

    #[test]
    fn encoding_quotes_bad_names() {
        assert_eq!(
            enc(&Command::Delete {
                name: "a b\nrotate-key".into()
            }),
            b"delete 'a b\nrotate-key'\n"
        );
        assert_eq!(
            enc(&Command::Delete {
                name: "it's".into()
            }),
            b"delete 'it''s'\n"
        );
        assert_eq!(enc(&Command::Delete { name: "".into() }), b"delete ''\n");
        assert_eq!(
            enc(&Command::Delete { name: "{5}".into() }),
            b"delete '{5}'\n"
        );
    }

    #[test]
    fn encoding_never_reallocates() {
        let c = Command::Grant {
            service: "''''".into(),
            name: "x".repeat(300),
            expires: None,
        };
        let e = c.encode();
        assert!(e.capacity() >= e.len());
        let c = Command::Set {
            name: "n".into(),
            value: Value::from(vec![7; 100_000]),
        };
        let e = c.encode();
        assert!(e.len() <= e.capacity());
        assert_eq!(e.len(), "set n {100000}\n".len() + 100_000 + 1);
    }

    #[test]
    fn names() {
        assert!(is_valid_name("db_password"));
        assert!(is_valid_name("A-Z.a_z-09"));
        assert!(is_valid_name(&"x".repeat(128)));
        assert!(is_valid_name("..."));
        assert!(is_valid_name(".hidden"));
        assert!(!is_valid_name(&"x".repeat(129)));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("."));
        assert!(!is_valid_name(".."));
        assert!(!is_valid_name("a/b"));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name("é"));
        assert!(is_reserved_service("admin"));
        assert!(is_reserved_service("secrets"));
        assert!(!is_reserved_service("Admin"));
    }

    #[test]
    fn validate() {
        let ok = Command::ServiceUid {
            service: "web".into(),
            uid: NO_UID - 1,
        };
        assert_eq!(ok.validate(), Ok(()));
        let bad = Command::ServiceUid {
            service: "web".into(),
            uid: NO_UID,
        };
        assert_eq!(bad.validate(), Err(ErrorKind::BadUid));
        let reserved = Command::ServiceRemove {
            service: "admin".into(),
        };
        assert_eq!(reserved.validate(), Err(ErrorKind::ReservedService));
        let bad_name = Command::Grant {
            service: "web".into(),
            name: "..".into(),
            expires: None,
        };
        assert_eq!(
            bad_name.validate(),
            Err(ErrorKind::InvalidName(NameKind::Secret))
        );
        let big = Command::Set {
            name: "n".into(),
            value: Value::from(vec![0; MAX_VALUE_LEN + 1]),
        };
        assert_eq!(big.validate(), Err(ErrorKind::ValueTooLong));
        let max = Command::ServiceManifest {
            service: "web".into(),
            manifest: Value::from(vec![0; MAX_VALUE_LEN]),
        };
        assert_eq!(max.validate(), Ok(()));
        assert_eq!(Command::RotateKey.validate(), Ok(()));
    }

    #[test]
    fn verbs() {
        assert_eq!(Command::RotateKey.verb(), "rotate-key");
        assert_eq!(
            Command::ServiceRemove {
                service: "w".into()
            }
            .verb(),
            "service"
        );
    }
}
