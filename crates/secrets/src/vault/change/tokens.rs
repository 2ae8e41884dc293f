//! The API tokens' changes, planned: [`Change::TokenCreate`] and [`Change::TokenRevoke`],
//! and the revocation of a removed service's tokens.
//!
//! A token's record keeps whose it is, its keyed hash, who made it and when, when it
//! ends and whether (by whom, when, why) it was revoked; the token itself is in the
//! [`Applied::TokenCreated`] of the change that made it, and nowhere else. Records of
//! tokens that ended stay, for `token list` and the audit's sake, up to [`MAX_TOKENS`]:
//! past it, a new token takes the place of the one that ended longest ago.

use super::{Applied, Change, Overlay};
use crate::error::{Error, Result};
use crate::names;
use crate::record::{Made, Marked, TokenRecord};
use crate::rows::Mutation;
use crate::tokens;

/// The most tokens' records the store keeps, holding or ended.
pub const MAX_TOKENS: usize = 1024;

/// How many times a new token's ID is drawn again when the one drawn is taken (64 random
/// bits: never, in practice).
const ID_DRAWS: usize = 4;

impl TokenRecord {
    /// Whether it has ended at `now`: revoked, or past its end.
    pub(crate) fn ended(&self, now: u64) -> bool {
        self.revoked.is_some() || self.expires.is_some_and(|t| t <= now)
    }

    /// When it ended, if it has at `now`.
    fn ended_at(&self, now: u64) -> Option<u64> {
        let expired = self.expires.filter(|&t| t <= now);
        match (&self.revoked, expired) {
            (Some(r), Some(t)) => Some(r.at.min(t)),
            (Some(r), None) => Some(r.at),
            (None, t) => t,
        }
    }
}

impl Overlay<'_> {
    /// Token `id`'s record, as the transaction sees it.
    fn token(&self, id: &str) -> Option<&TokenRecord> {
        match self.tokens.get(id) {
            Some(planned) => planned.as_ref(),
            None => self.base.tokens.get(id),
        }
    }

    /// Every token's record, as the transaction sees it (in no particular order).
    fn all_tokens(&self) -> impl Iterator<Item = (&str, &TokenRecord)> {
        let planned = &self.tokens;
        self.base
            .tokens
            .iter()
            .filter(move |(id, _)| !planned.contains_key(id.as_str()))
            .map(|(id, rec)| (id.as_str(), rec))
            .chain(
                planned
                    .iter()
                    .filter_map(|(id, rec)| rec.as_ref().map(|r| (id.as_str(), r))),
            )
    }

    /// Plans a token's change; `at` says who makes it, when and why.
    pub(super) fn plan_token(&mut self, change: &Change<'_>, at: &Made) -> Result<Applied> {
        match *change {
            Change::TokenCreate {
                service,
                expires_in,
            } => {
                if let Some(name) = service {
                    names::check_service_name(name)?;
                    if self.service(name).is_none() {
                        return Err(Error::NoSuchService);
                    }
                }
                self.make_room_for_a_token(at.at)?;
                let key = self.base.token_key.clone().ok_or(Error::Corrupt {
                    what: "the tokens' key is not loaded",
                })?;
                let mut id = tokens::new_id()?;
                for _ in 0..ID_DRAWS {
                    if self.token(&id).is_none() {
                        break;
                    }
                    id = tokens::new_id()?;
                }
                if self.token(&id).is_some() {
                    return Err(Error::Random);
                }
                let (token, hash) = tokens::generate(&key, &id)?;
                let expires = expires_in.map(|secs| at.at.saturating_add(secs));
                self.push(Mutation::PutToken(
                    id,
                    TokenRecord {
                        service: service.map(str::to_owned),
                        hash,
                        created: Marked::of(at),
                        expires,
                        revoked: None,
                    },
                ));
                Ok(Applied::TokenCreated { token, expires })
            }
            Change::TokenRevoke { id } => {
                if !tokens::is_valid_token_id(id) {
                    return Err(Error::InvalidTokenId);
                }
                let rec = self.token(id).ok_or(Error::NoSuchToken)?;
                if rec.revoked.is_some() {
                    return Ok(Applied::TokenRevoked { already: true });
                }
                let mut rec = rec.clone();
                rec.revoked = Some(Marked::of(at));
                self.push(Mutation::PutToken(id.to_owned(), rec));
                Ok(Applied::TokenRevoked { already: false })
            }
            _ => Err(Error::Corrupt {
                what: "a change that is no token's was planned as one",
            }),
        }
    }

    /// At [`MAX_TOKENS`] records, forgets the one that ended longest ago; refuses when
    /// every one still holds.
    fn make_room_for_a_token(&mut self, now: u64) -> Result<()> {
        if self.all_tokens().count() < MAX_TOKENS {
            return Ok(());
        }
        let oldest = self
            .all_tokens()
            .filter_map(|(id, rec)| rec.ended_at(now).map(|t| (t, id.to_owned())))
            .min();
        match oldest {
            Some((_, id)) => {
                self.push(Mutation::DeleteToken(id));
                Ok(())
            }
            None => Err(Error::TooManyTokens { limit: MAX_TOKENS }),
        }
    }

    /// Revokes every token of `service` that is not revoked yet (the service is being
    /// removed); returns how many.
    pub(super) fn revoke_tokens_of(&mut self, service: &str, at: &Made) -> usize {
        let live: Vec<(String, TokenRecord)> = self
            .all_tokens()
            .filter(|(_, rec)| rec.service.as_deref() == Some(service) && rec.revoked.is_none())
            .map(|(id, rec)| (id.to_owned(), rec.clone()))
            .collect();
        let n = live.len();
        for (id, mut rec) in live {
            rec.revoked = Some(Marked {
                reason: Some("its service was removed".to_owned()),
                ..Marked::of(at)
            });
            self.push(Mutation::PutToken(id, rec));
        }
        n
    }
}
