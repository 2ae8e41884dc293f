//! API tokens as readers see them: who a token proves ([`Vault::authenticate_token`]),
//! whether one still holds ([`Vault::token_holds`]), the list without the tokens
//! ([`Vault::tokens`]), and a wake-up when any token changes ([`Vault::tokens_changed`]),
//! so that a server closes the connections of a revoked token at once.
//!
//! A token is checked in one way whatever is wrong with it: its text's shape, its ID
//! looked up, its keyed hash computed (against a stand-in when the ID is unknown) and
//! compared in constant time. Only once the hash matches, which takes the token itself,
//! does a refusal say more (revoked, expired): telling that to whoever holds the token
//! tells them nothing they could not learn by using it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::Vault;
use crate::actor::Principal;
use crate::record::TokenRecord;
use crate::rows::Mutation;
use crate::tokens;

pub use super::change::MAX_TOKENS;

/// Where a token stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenState {
    /// It proves its principal.
    Active,
    /// Past its end.
    Expired,
    /// Revoked (or its service removed).
    Revoked,
}

impl TokenState {
    /// `active`, `expired`, `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Active => "active",
            TokenState::Expired => "expired",
            TokenState::Revoked => "revoked",
        }
    }
}

/// A token's public facts: never the token, never its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// Its ID.
    pub id: String,
    /// Whom it proves: [`Principal::Admin`] or a [`Principal::Service`].
    pub principal: Principal,
    /// When it was made (unix seconds).
    pub created: u64,
    /// Who made it, as an actor shows it without the uid (`admin`).
    pub created_by: String,
    /// When it stops holding, if it does.
    pub expires: Option<u64>,
    /// When it was revoked, if it was.
    pub revoked: Option<u64>,
    /// Where it stands now.
    pub state: TokenState,
}

/// Who a token proves: what [`Vault::authenticate_token`] answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenHolder {
    /// The token's ID.
    pub id: String,
    /// Whom it proves: [`Principal::Admin`] or a [`Principal::Service`].
    pub principal: Principal,
    /// When it stops holding, if it does.
    pub expires: Option<u64>,
}

/// Why a token was refused. Its `Display` starts "permission denied", as every refusal
/// of access does, and never shows a byte of what was presented.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefused {
    /// Not a token this store made: malformed, unknown, or not matching its hash.
    #[error("permission denied: not a valid token")]
    Invalid,
    /// The token was revoked.
    #[error("permission denied: token {id} was revoked")]
    Revoked {
        /// Its ID.
        id: String,
    },
    /// The token is past its end.
    #[error("permission denied: token {id} expired")]
    Expired {
        /// Its ID.
        id: String,
    },
    /// The token's service is gone.
    #[error("permission denied: the service of token {id} no longer exists")]
    NoService {
        /// Its ID.
        id: String,
    },
}

/// What a stranger's token is compared with when its ID is unknown: so that an unknown
/// ID is refused after the same work as a wrong secret.
const STAND_IN: tokens::TokenHash = [0; tokens::HASH_LEN];

impl Vault {
    /// Who the token `text` proves, checked in constant time against its keyed hash.
    ///
    /// # Errors
    /// [`TokenRefused`]: [`TokenRefused::Invalid`] alike for anything that is not a token
    /// of this store; the other refusals only for the token itself.
    pub fn authenticate_token(&self, text: &[u8]) -> Result<TokenHolder, TokenRefused> {
        let state = self.state();
        let key = state.token_key.as_ref().ok_or(TokenRefused::Invalid)?;
        let id = tokens::id_of(text);
        let rec = id.and_then(|id| state.tokens.get(id));
        let stored = rec.map_or(&STAND_IN, |r| &r.hash);
        // Computed whatever was found, so that a refusal costs the same.
        let matches = key.verify(text, stored);
        let (Some(id), Some(rec), true) = (id, rec, matches) else {
            return Err(TokenRefused::Invalid);
        };
        let now = self.clock();
        let id = id.to_owned();
        if rec.revoked.is_some() {
            return Err(TokenRefused::Revoked { id });
        }
        if rec.expires.is_some_and(|t| t <= now) {
            return Err(TokenRefused::Expired { id });
        }
        let principal = match &rec.service {
            Some(s) if !state.services.contains_key(s) => {
                return Err(TokenRefused::NoService { id });
            }
            Some(s) => Principal::Service(s.clone()),
            None => Principal::Admin,
        };
        Ok(TokenHolder {
            id,
            principal,
            expires: rec.expires,
        })
    }

    /// Whether token `id` still holds: known, not revoked, not past its end, its service
    /// (if it has one) still there. One lookup: a server asks on every request made over
    /// a connection that attached with a token.
    pub fn token_holds(&self, id: &str) -> bool {
        let state = self.state();
        let now = self.clock();
        state.tokens.get(id).is_some_and(|rec| {
            !rec.ended(now)
                && rec
                    .service
                    .as_ref()
                    .is_none_or(|s| state.services.contains_key(s))
        })
    }

    /// Every token's public facts, sorted by ID.
    pub fn tokens(&self) -> Vec<TokenInfo> {
        let now = self.clock();
        self.state()
            .tokens
            .iter()
            .map(|(id, rec)| info_of(id, rec, now))
            .collect()
    }

    /// Resolves at the next commit applied that changes a token or removes a service (or
    /// a reload of the store); at once if one was applied since this was called.
    pub fn tokens_changed(&self) -> impl Future<Output = ()> + Send + 'static {
        self.token_signal.changed()
    }
}

fn info_of(id: &str, rec: &TokenRecord, now: u64) -> TokenInfo {
    let state = if rec.revoked.is_some() {
        TokenState::Revoked
    } else if rec.expires.is_some_and(|t| t <= now) {
        TokenState::Expired
    } else {
        TokenState::Active
    };
    TokenInfo {
        id: id.to_owned(),
        principal: rec
            .service
            .clone()
            .map_or(Principal::Admin, Principal::Service),
        created: rec.created.at,
        created_by: rec.created.by.clone(),
        expires: rec.expires,
        revoked: rec.revoked.as_ref().map(|m| m.at),
        state,
    }
}

/// Whether a batch changes what [`Vault::token_holds`] answers.
pub(super) fn touches_tokens(batch: &[Mutation]) -> bool {
    batch.iter().any(|m| {
        matches!(
            m,
            Mutation::PutToken(..) | Mutation::DeleteToken(_) | Mutation::DeleteService(_)
        )
    })
}

/// Wakes whoever waits for a token's change ([`Vault::tokens_changed`]). Each waiter has
/// one entry, removed when it is dropped, so that waiters that come and go (a connection
/// each) leave nothing behind.
#[derive(Default)]
pub(crate) struct TokenSignal {
    inner: Arc<Mutex<Signal>>,
}

#[derive(Default)]
struct Signal {
    /// How many times it fired.
    fired: u64,
    next_waiter: u64,
    wakers: HashMap<u64, Waker>,
}

fn lock(m: &Mutex<Signal>) -> MutexGuard<'_, Signal> {
    // Every operation leaves it whole.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TokenSignal {
    /// Wakes every waiter.
    pub(crate) fn fire(&self) {
        let wakers: Vec<Waker> = {
            let mut s = lock(&self.inner);
            s.fired = s.fired.wrapping_add(1);
            s.wakers.drain().map(|(_, w)| w).collect()
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    fn changed(&self) -> Changed {
        let mut s = lock(&self.inner);
        let waiter = s.next_waiter;
        s.next_waiter = s.next_waiter.wrapping_add(1);
        Changed {
            signal: Arc::clone(&self.inner),
            seen: s.fired,
            waiter,
        }
    }
}

/// [`Vault::tokens_changed`]'s future.
struct Changed {
    signal: Arc<Mutex<Signal>>,
    seen: u64,
    waiter: u64,
}

impl Future for Changed {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = lock(&self.signal);
        if s.fired != self.seen {
            s.wakers.remove(&self.waiter);
            return Poll::Ready(());
        }
        s.wakers.insert(self.waiter, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Changed {
    fn drop(&mut self) {
        lock(&self.signal).wakers.remove(&self.waiter);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::actor::Actor;
    use crate::error::Error;
    use crate::vault::{Applied, Change};

    fn vault() -> (tempfile::TempDir, Vault) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        Vault::init(&dir, None, 1000).unwrap();
        let vault = Vault::open(&dir, None).unwrap();
        vault.service_set_uid("web", 1001).unwrap();
        (tmp, vault)
    }

    fn admin() -> Actor {
        Actor::admin(Some(1000))
    }

    /// A token made for `service` (`None`: the admin), ending after `expires_in`.
    fn create(vault: &Vault, service: Option<&str>, expires_in: Option<u64>) -> tokens::NewToken {
        let applied = vault
            .apply(
                &admin(),
                &[Change::TokenCreate {
                    service,
                    expires_in,
                }],
            )
            .unwrap();
        match applied.into_iter().next() {
            Some(Applied::TokenCreated { token, .. }) => token,
            other => panic!("{other:?}"),
        }
    }

    fn revoke(vault: &Vault, id: &str) -> Result<Applied, Error> {
        vault
            .apply(&admin(), &[Change::TokenRevoke { id }])
            .map(|mut a| a.remove(0))
            .map_err(|e| e.error)
    }

    /// Every audit record of `changes`, as JSON lines.
    fn trail(vault: &Vault) -> Vec<String> {
        vault
            .audit_read(audit::CHANGES, 1, 1000)
            .unwrap()
            .into_iter()
            .map(|(r, _)| r.to_json())
            .collect()
    }

    #[test]
    fn a_token_proves_its_principal_and_the_store_keeps_only_its_hash() {
        let (tmp, vault) = vault();
        let web = create(&vault, Some("web"), None);
        let root = create(&vault, None, Some(3600));
        assert_eq!(
            vault.authenticate_token(web.expose().as_bytes()).unwrap(),
            TokenHolder {
                id: web.id().into(),
                principal: Principal::Service("web".into()),
                expires: None,
            }
        );
        let holder = vault.authenticate_token(root.expose().as_bytes()).unwrap();
        assert_eq!(holder.principal, Principal::Admin);
        assert!(holder.expires.is_some());
        assert!(vault.token_holds(web.id()) && vault.token_holds(root.id()));
        // Listed without the token.
        let list = vault.tokens();
        assert_eq!(list.len(), 2);
        assert!(
            list.iter()
                .all(|t| t.state == TokenState::Active && t.created_by == "admin")
        );
        let listed = format!("{list:?}");
        for token in [&web, &root] {
            assert!(listed.contains(token.id()));
            assert!(!listed.contains(&token.expose()[24..]), "{listed}");
        }
        // The audit records who made which, by ID, never the token.
        let lines = trail(&vault);
        let made: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("token-create"))
            .collect();
        assert_eq!(made.len(), 2, "{lines:?}");
        assert!(made[0].contains(web.id()) && made[0].contains(r#""service":"web""#));
        for line in &lines {
            assert!(!line.contains(&web.expose()[24..]) && !line.contains(&root.expose()[24..]));
        }
        // Nor is it anywhere in the store or the key file.
        drop(vault);
        for file in ["store.redb", "key"] {
            let bytes = std::fs::read(tmp.path().join("data").join(file)).unwrap();
            for token in [&web, &root] {
                let secret = &token.expose().as_bytes()[24..];
                assert!(!bytes.windows(secret.len()).any(|w| w == secret), "{file}");
            }
        }
    }

    #[test]
    fn anything_but_a_live_token_is_refused_and_a_stranger_learns_nothing() {
        let (_tmp, vault) = vault();
        let token = create(&vault, Some("web"), None);
        let text = token.expose().as_bytes();
        let mut wrong = text.to_vec();
        *wrong.last_mut().unwrap() ^= 1;
        let mut unknown = text.to_vec();
        unknown[7] = if unknown[7] == b'a' { b'b' } else { b'a' };
        for bad in [
            &wrong[..],
            &unknown,
            b"",
            b"srvtok_",
            &text[..text.len() - 1],
            b"\xff",
        ] {
            assert_eq!(vault.authenticate_token(bad), Err(TokenRefused::Invalid));
        }
        // A refusal never shows what was presented.
        assert_eq!(
            TokenRefused::Invalid.to_string(),
            "permission denied: not a valid token"
        );
        // Revoked: refused, and said so to its holder only.
        assert_eq!(
            revoke(&vault, token.id()).unwrap(),
            Applied::TokenRevoked { already: false }
        );
        let revoked = vault.authenticate_token(text).unwrap_err();
        assert_eq!(
            revoked,
            TokenRefused::Revoked {
                id: token.id().into()
            }
        );
        assert!(revoked.to_string().starts_with("permission denied: token "));
        assert_eq!(vault.authenticate_token(&wrong), Err(TokenRefused::Invalid));
        assert!(!vault.token_holds(token.id()));
        assert_eq!(
            revoke(&vault, token.id()).unwrap(),
            Applied::TokenRevoked { already: true }
        );
        assert!(matches!(
            revoke(&vault, "0123456789abcdef"),
            Err(Error::NoSuchToken)
        ));
        assert!(matches!(revoke(&vault, "../x"), Err(Error::InvalidTokenId)));
        assert_eq!(vault.tokens()[0].state, TokenState::Revoked);
        assert!(vault.tokens()[0].revoked.is_some());
    }

    #[test]
    fn a_token_ends_at_its_time() {
        let (_tmp, vault) = vault();
        // Later than anything the store has seen: changes are never dated before that.
        const T: u64 = 4_000_000_000;
        vault.set_clock(Some(T));
        let token = create(&vault, None, Some(60));
        assert_eq!(vault.tokens()[0].expires, Some(T + 60));
        vault.set_clock(Some(T + 59));
        assert!(vault.authenticate_token(token.expose().as_bytes()).is_ok());
        assert!(vault.token_holds(token.id()));
        vault.set_clock(Some(T + 60));
        assert_eq!(
            vault.authenticate_token(token.expose().as_bytes()),
            Err(TokenRefused::Expired {
                id: token.id().into()
            })
        );
        assert!(!vault.token_holds(token.id()));
        assert_eq!(vault.tokens()[0].state, TokenState::Expired);
    }

    #[test]
    fn a_token_is_for_a_service_that_exists_and_goes_with_it() {
        let (_tmp, vault) = vault();
        let e = vault
            .apply(
                &admin(),
                &[Change::TokenCreate {
                    service: Some("nosuch"),
                    expires_in: None,
                }],
            )
            .unwrap_err();
        assert!(matches!(e.error, Error::NoSuchService), "{e:?}");
        let token = create(&vault, Some("web"), None);
        let other = create(&vault, None, None);
        vault.service_remove("web").unwrap();
        assert!(!vault.token_holds(token.id()));
        assert_eq!(
            vault.authenticate_token(token.expose().as_bytes()),
            Err(TokenRefused::Revoked {
                id: token.id().into()
            })
        );
        // Made again under the same name, the service does not bring its tokens back.
        vault.service_set_uid("web", 1001).unwrap();
        assert!(!vault.token_holds(token.id()));
        assert!(vault.token_holds(other.id()));
        let removal = trail(&vault)
            .into_iter()
            .find(|l| l.contains("service-remove"))
            .unwrap();
        assert!(removal.contains(r#""tokens_revoked":"1""#), "{removal}");
    }

    #[test]
    fn a_freeze_stops_new_tokens_not_revocations() {
        let (_tmp, vault) = vault();
        let token = create(&vault, None, None);
        vault.apply(&admin(), &[Change::Freeze]).unwrap();
        let e = vault
            .apply(
                &admin(),
                &[Change::TokenCreate {
                    service: None,
                    expires_in: None,
                }],
            )
            .unwrap_err();
        assert!(matches!(e.error, Error::Frozen), "{e:?}");
        revoke(&vault, token.id()).unwrap();
    }

    #[test]
    fn tokens_outlive_a_restart_and_a_key_rotation_and_the_key_file_keeps_their_key() {
        let (tmp, vault) = vault();
        let dir = tmp.path().join("data");
        let token = create(&vault, Some("web"), None);
        vault.rotate_key(&|_| {}).unwrap();
        assert!(vault.authenticate_token(token.expose().as_bytes()).is_ok());
        drop(vault);
        let text = std::fs::read_to_string(dir.join("key")).unwrap();
        assert_eq!(text.lines().filter(|l| l.starts_with("token ")).count(), 1);
        let vault = Vault::open(&dir, None).unwrap();
        assert!(vault.authenticate_token(token.expose().as_bytes()).is_ok());
        drop(vault);
        // A key file without the line (written before tokens) gets a new key at open; the
        // tokens hashed under the old one no longer prove anything (fails closed).
        let without: String = text
            .lines()
            .filter(|l| !l.starts_with("token "))
            .map(|l| format!("{l}\n"))
            .collect();
        crate::fsutil::write_atomic(&dir.join("key"), without.as_bytes()).unwrap();
        let vault = Vault::open(&dir, None).unwrap();
        assert_eq!(
            vault.authenticate_token(token.expose().as_bytes()),
            Err(TokenRefused::Invalid)
        );
        let fresh = create(&vault, None, None);
        assert!(vault.authenticate_token(fresh.expose().as_bytes()).is_ok());
        let text = std::fs::read_to_string(dir.join("key")).unwrap();
        assert_eq!(text.lines().filter(|l| l.starts_with("token ")).count(), 1);
    }

    #[test]
    fn a_backup_holds_the_tokens_and_their_revocations() {
        let (tmp, vault) = vault();
        let kept = create(&vault, Some("web"), None);
        let revoked = create(&vault, None, None);
        revoke(&vault, revoked.id()).unwrap();
        let backup = vault.backup().unwrap();
        let mut bytes = vec![0; usize::try_from(backup.len()).unwrap()];
        let mut at = 0;
        while at < bytes.len() {
            at += backup.read_at(at as u64, &mut bytes[at..]).unwrap();
        }
        // Restored beside the same key file, as docs/operations.md has it.
        let restored = tmp.path().join("restored");
        std::fs::create_dir(&restored).unwrap();
        std::fs::set_permissions(
            &restored,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let store = restored.join(crate::STORE_FILE);
        std::fs::write(&store, &bytes).unwrap();
        std::fs::set_permissions(&store, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let key = tmp.path().join("data").join(crate::KEY_FILE);
        let copy = Vault::open(&restored, Some(&key)).unwrap();
        assert!(copy.authenticate_token(kept.expose().as_bytes()).is_ok());
        assert_eq!(
            copy.authenticate_token(revoked.expose().as_bytes()),
            Err(TokenRefused::Revoked {
                id: revoked.id().into()
            })
        );
    }

    #[test]
    fn at_the_bound_a_new_token_takes_the_place_of_the_one_ended_longest_ago() {
        let (_tmp, vault) = vault();
        vault.set_clock(Some(4_000_000_000));
        let first = create(&vault, None, None);
        revoke(&vault, first.id()).unwrap();
        vault.set_clock(Some(4_000_001_000));
        let second = create(&vault, None, None);
        revoke(&vault, second.id()).unwrap();
        let changes: Vec<Change<'_>> = (2..MAX_TOKENS)
            .map(|_| Change::TokenCreate {
                service: None,
                expires_in: None,
            })
            .collect();
        vault.apply(&admin(), &changes).unwrap();
        assert_eq!(vault.tokens().len(), MAX_TOKENS);
        create(&vault, None, None);
        let ids: Vec<String> = vault.tokens().into_iter().map(|t| t.id).collect();
        assert_eq!(ids.len(), MAX_TOKENS);
        assert!(!ids.iter().any(|id| id == first.id()));
        assert!(ids.iter().any(|id| id == second.id()));
        create(&vault, None, None);
        // Every one holds now: no room.
        let e = vault
            .apply(
                &admin(),
                &[Change::TokenCreate {
                    service: None,
                    expires_in: None,
                }],
            )
            .unwrap_err();
        assert!(matches!(e.error, Error::TooManyTokens { .. }), "{e:?}");
    }

    #[test]
    fn a_change_of_a_token_wakes_whoever_waits_for_one() {
        let (_tmp, vault) = vault();
        let token = create(&vault, None, None);
        let mut cx = Context::from_waker(Waker::noop());
        let mut changed = pin!(vault.tokens_changed());
        assert!(changed.as_mut().poll(&mut cx).is_pending());
        // Other changes do not.
        vault.set("a", b"1").unwrap();
        assert!(changed.as_mut().poll(&mut cx).is_pending());
        revoke(&vault, token.id()).unwrap();
        assert_eq!(changed.as_mut().poll(&mut cx), Poll::Ready(()));
        // Waiters that went leave nothing behind.
        for _ in 0..100 {
            let mut w = pin!(vault.tokens_changed());
            assert!(w.as_mut().poll(&mut cx).is_pending());
        }
        assert!(lock(&vault.token_signal.inner).wakers.is_empty());
    }
}
