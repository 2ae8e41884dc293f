//! The ctl queries of the audit trail: `audit head`, `audit since [CHAIN] SEQ [limit N]`
//! and `audit verify [head HEAD]...`, answered on the fid that asked (never a value: the
//! trail holds none).

use ctl::{Answer, AuditQuery, Command};
use secrets::Vault;
use secrets::audit::{CHANGES, Expected, format_ms, hex};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::reports::pretty_json;

/// How many records `audit since` answers with unless asked for fewer (or more: up to
/// [`secrets::MAX_READ`]).
pub(super) const DEFAULT_LIMIT: u64 = 1000;

/// A chain's head, as `audit head` shows it.
#[derive(Serialize)]
struct HeadJson {
    seq: u64,
    hash: String,
    time: String,
}

#[derive(Serialize)]
struct HeadsJson {
    public_key: Option<String>,
    heads: std::collections::BTreeMap<String, HeadJson>,
}

/// What `audit verify` found.
#[derive(Serialize)]
struct VerifyJson {
    verified: bool,
    records: u64,
    signatures: u64,
    heads: std::collections::BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bad: Option<BadJson>,
}

#[derive(Serialize)]
struct BadJson {
    chain: String,
    seq: Option<u64>,
    what: String,
    text: String,
}

/// Answers an `audit` query; `None` for another command.
///
/// # Errors
/// A head that does not read, or the store's failure, in the ctl error's words.
pub(super) fn query(vault: &Vault, command: &Command) -> Option<Result<Answer, String>> {
    let Command::Audit(q) = command else {
        return None;
    };
    let answer = Answer::new(command.verb());
    Some(match q {
        AuditQuery::Head => {
            let heads = vault.audit_heads();
            let mut a = answer.word("head");
            if let Some(key) = heads.public_key {
                a = a.field("public_key", key);
            }
            for (chain, head) in &heads.heads {
                a = a.field(chain, head);
            }
            let json = HeadsJson {
                public_key: heads.public_key.map(|k| k.to_string()),
                heads: heads
                    .heads
                    .iter()
                    .map(|(chain, h)| {
                        (
                            chain.clone(),
                            HeadJson {
                                seq: h.seq,
                                hash: hex(&h.hash),
                                time: format_ms(h.time_ms),
                            },
                        )
                    })
                    .collect(),
            };
            Ok(a.body(pretty_json(&json)))
        }
        AuditQuery::Since {
            chain,
            after,
            limit,
        } => {
            let chain = chain.as_deref().unwrap_or(CHANGES);
            let head = vault.audit_heads().heads.get(chain).map_or(0, |h| h.seq);
            // Never past the head the store record (tagged with the cluster key) names:
            // rows beyond it are no record of ours, whoever wrote them.
            let limit = limit
                .unwrap_or(DEFAULT_LIMIT)
                .min(secrets::MAX_READ as u64)
                .min(head.saturating_sub(*after)) as usize;
            match vault.audit_read(chain, after.saturating_add(1), limit) {
                Ok(records) => {
                    let last = records.last().map_or(*after, |(r, _)| r.seq);
                    let mut body = Zeroizing::new(Vec::new());
                    for (record, hash) in &records {
                        body.extend_from_slice(record.to_json_with(hash).as_bytes());
                        body.push(b'\n');
                    }
                    Ok(answer
                        .word("since")
                        .word(chain)
                        .field("records", records.len())
                        .field("last", last)
                        .field("head", head)
                        .body(body))
                }
                Err(e) => Err(super::explain(&e)),
            }
        }
        AuditQuery::Verify { heads } => {
            let mut expected = Vec::with_capacity(heads.len());
            for h in heads {
                match Expected::parse(h, CHANGES) {
                    Some(e) => expected.push(e),
                    None => {
                        return Some(Err(
                            "a head is [CHAIN:]SEQ:HASH, as deploy audit head prints it".into(),
                        ));
                    }
                }
            }
            match vault.audit_verify(&expected) {
                Ok(Ok(summary)) => {
                    let json = VerifyJson {
                        verified: true,
                        records: summary.records,
                        signatures: summary.signatures,
                        heads: summary
                            .heads
                            .iter()
                            .map(|(c, h)| (c.clone(), h.to_string()))
                            .collect(),
                        bad: None,
                    };
                    Ok(answer
                        .word("verify")
                        .field("verified", "yes")
                        .field("records", summary.records)
                        .body(pretty_json(&json)))
                }
                Ok(Err(bad)) => {
                    tracing::warn!(error = %bad, "the audit trail does not verify");
                    let json = VerifyJson {
                        verified: false,
                        records: 0,
                        signatures: 0,
                        heads: Default::default(),
                        bad: Some(BadJson {
                            chain: bad.chain.clone(),
                            seq: bad.seq,
                            what: bad.what.clone(),
                            text: bad.to_string(),
                        }),
                    };
                    let mut a = answer
                        .word("verify")
                        .field("verified", "no")
                        .field("chain", &bad.chain);
                    if let Some(seq) = bad.seq {
                        a = a.field("seq", seq);
                    }
                    Ok(a.body(pretty_json(&json)))
                }
                Err(e) => Err(super::explain(&e)),
            }
        }
    })
}
