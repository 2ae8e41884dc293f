//! kill -9 in the middle of set, grant, revoke, rotate-key and a catalog declaration
//! (`meta`), over and over: after every restart each acknowledged command is there, and
//! every value decrypts.
//!
//! `CRASH_ITERATIONS` sets the number of kills (default 200, what CI runs); the soak
//! script `tests/soak/crash.sh` runs thousands.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ninep::client::{Client, Fid};
use srv_secrets_tests::harness::SecretsServer;

const SERVICE: &str = "crashsvc";

/// What the server has acknowledged.
#[derive(Default)]
struct Model {
    values: BTreeMap<String, Vec<u8>>,
    granted: BTreeSet<String>,
    /// Each secret's owner in the catalog.
    owners: BTreeMap<String, String>,
}

/// The one command that was in flight when the server died: it may or may not have
/// applied, and either is correct.
#[derive(Clone, Debug)]
enum Op {
    Set(String, Vec<u8>),
    Grant(String),
    Revoke(String),
    RotateKey,
    /// `meta NAME owner OWNER`.
    Owner(String, String),
}

fn value_of(i: u64, j: u64) -> Vec<u8> {
    // Distinct, binary, and of varying length.
    let len = 1 + (i * 7 + j * 13) % 300;
    (0..len)
        .map(|k| ((i * 31 + j * 17 + k) % 256) as u8)
        .collect()
}

async fn ctl(admin: &Fid) -> Result<Fid, ninep::client::ClientError> {
    let mut f = admin.walk(&["secrets", "ctl"]).await?;
    f.open(ninep::om::WRITE).await?;
    Ok(f)
}

async fn send(ctl: &Fid, op: &Op) -> Result<(), ninep::client::ClientError> {
    let cmd = match op {
        Op::Set(n, v) => ::ctl::Command::Set {
            name: n.clone(),
            value: v.clone().into(),
        },
        Op::Grant(n) => ::ctl::Command::Grant {
            service: SERVICE.into(),
            name: n.clone(),
            expires: None,
        },
        Op::Revoke(n) => ::ctl::Command::Revoke {
            service: SERVICE.into(),
            name: n.clone(),
        },
        Op::RotateKey => ::ctl::Command::RotateKey,
        Op::Owner(n, owner) => ::ctl::Command::Catalog(::ctl::CatalogCommand::Meta {
            name: n.clone(),
            fields: ::ctl::MetaFields {
                owner: Some(owner.clone()),
                ..::ctl::MetaFields::default()
            },
        }),
    };
    ctl.write(0, &cmd.encode()).await.map(|_| ())
}

/// Reads `name` as the service sees it (None: not there for the service).
async fn read_as_service(view: &Fid, name: &str) -> Option<Vec<u8>> {
    let mut f = view.walk(&["secret", name]).await.ok()?;
    f.open(ninep::om::READ).await.ok()?;
    f.read_all().await.ok().map(|v| v.to_vec())
}

/// Each secret's owner, from `catalog export json` on a fid of its own.
async fn owners(admin: &Fid) -> BTreeMap<String, String> {
    let mut f = admin.walk(&["secrets", "ctl"]).await.unwrap();
    f.open(ninep::om::RDWR).await.unwrap();
    f.write(0, b"catalog export json\n").await.unwrap();
    let mut reader = ::ctl::ReplyReader::new();
    reader.push(&f.read_all().await.unwrap());
    let Some(Ok(::ctl::Reply::Ok(answer))) = reader.next_reply() else {
        panic!("no export")
    };
    let export: serde_json::Value =
        serde_json::from_slice(answer.body.as_deref().unwrap()).unwrap();
    let mut out = BTreeMap::new();
    if let Some(secrets) = export["secrets"].as_object() {
        for (name, meta) in secrets {
            if let Some(owner) = meta["owner"].as_str() {
                out.insert(name.clone(), owner.to_string());
            }
        }
    }
    out
}

/// Checks the model against the restarted server, allowing `in_flight` either way.
async fn verify(s: &SecretsServer, model: &Model, in_flight: Option<&Op>, names: &[String]) {
    let client = Client::connect_unix(&s.socket)
        .await
        .expect("server is back");
    let admin = client.attach("crash", "").await.unwrap();
    let declared = owners(&admin).await;
    for name in names {
        let acked = model.owners.get(name);
        let got = declared.get(name);
        match in_flight {
            Some(Op::Owner(n, owner)) if n == name => {
                assert!(
                    got == acked || got == Some(owner),
                    "{name}'s owner is {got:?}: neither the acknowledged one nor the one in flight"
                );
            }
            _ => assert_eq!(got, acked, "{name}'s acknowledged owner lost"),
        }
    }
    let view = client.attach("crash", SERVICE).await.unwrap();
    let mut store = admin.walk(&["secrets", "store"]).await.unwrap();
    store.open(ninep::om::READ).await.unwrap();
    let present: BTreeSet<String> = store
        .read_dir()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    for name in names {
        let acked = model.values.get(name);
        let exists = present.contains(name);
        match (acked, in_flight) {
            (Some(_), _) => assert!(exists, "acknowledged set of {name} lost"),
            (None, Some(Op::Set(n, _))) if n == name => {}
            (None, _) => assert!(!exists, "{name} exists but was never acknowledged"),
        }
        let got = read_as_service(&view, name).await;
        let granted = model.granted.contains(name);
        let maybe = match in_flight {
            Some(Op::Grant(n)) | Some(Op::Revoke(n)) => n == name,
            _ => false,
        };
        match (&got, granted) {
            (Some(v), true) => assert_eq!(Some(v), acked, "{name} reads a wrong value"),
            (None, true) if maybe => {}
            (None, true) => panic!("acknowledged grant of {name} lost"),
            (Some(_), false) if maybe => {}
            (Some(_), false) => panic!("{name} readable though revoked or never granted"),
            (None, false) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_set_grant_revoke_and_rotate_key() {
    let iterations: u64 = std::env::var("CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut s = SecretsServer::start();
    s.deploy_ok(&["service", "add", SERVICE, "--uid", "2001"]);
    // Enough secrets that a rotation takes long enough to be killed in the middle.
    let seed: String = (0..1000)
        .map(|j| format!("set seed{j} value-{j}\n"))
        .collect();
    {
        let client = Client::connect_unix(&s.socket).await.unwrap();
        let admin = client.attach("crash", "").await.unwrap();
        let c = ctl(&admin).await.unwrap();
        c.write_all(0, seed.as_bytes()).await.unwrap();
        c.clunk().await.unwrap();
    }
    let mut model = Model::default();
    for j in 0..1000 {
        model
            .values
            .insert(format!("seed{j}"), format!("value-{j}").into_bytes());
    }
    let mut rng: u64 = 0x5eed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut all_names: Vec<String> = model.values.keys().cloned().collect();
    // How often the kill landed in the middle of each kind of command.
    let mut interrupted: BTreeMap<&'static str, u32> = BTreeMap::new();
    for i in 0..iterations {
        let client = Client::connect_unix(&s.socket).await.unwrap();
        let admin = client.attach("crash", "").await.unwrap();
        let c = ctl(&admin).await.unwrap();
        // A few commands, then one more that the kill will (usually) interrupt.
        let mut ops = Vec::new();
        for j in 0..(next() % 4) {
            let name = format!("k{i}_{j}");
            ops.push(Op::Set(name.clone(), value_of(i, j)));
            ops.push(Op::Grant(name));
        }
        // Half the time revoke something granted, else grant something.
        let granted: Vec<String> = model.granted.iter().cloned().collect();
        if next() % 2 == 0 && !granted.is_empty() {
            ops.push(Op::Revoke(
                granted[(next() as usize) % granted.len()].clone(),
            ));
        } else if let Some(old) = all_names.get((next() as usize) % all_names.len().max(1)) {
            ops.push(Op::Grant(old.clone()));
        }
        if next() % 2 == 0 {
            let name = all_names[(next() as usize) % all_names.len()].clone();
            ops.push(Op::Owner(name, format!("owner-{i}")));
        }
        if next() % 3 == 0 {
            ops.push(Op::RotateKey);
        }
        let delay = Duration::from_micros(next() % 20_000);
        let killer = {
            let pid = s.pid().unwrap();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = rustix::process::kill_process(
                    rustix::process::Pid::from_raw(pid as i32).unwrap(),
                    rustix::process::Signal::KILL,
                );
            })
        };
        let mut in_flight = None;
        for op in &ops {
            in_flight = Some(op.clone());
            if send(&c, op).await.is_err() {
                break;
            }
            in_flight = None;
            match op {
                Op::Set(n, v) => {
                    model.values.insert(n.clone(), v.clone());
                    all_names.push(n.clone());
                }
                Op::Grant(n) => {
                    model.granted.insert(n.clone());
                }
                Op::Revoke(n) => {
                    model.granted.remove(n);
                }
                Op::RotateKey => {}
                Op::Owner(n, owner) => {
                    model.owners.insert(n.clone(), owner.clone());
                }
            }
        }
        killer.await.unwrap();
        let kind = match &in_flight {
            None => "nothing (all acknowledged first)",
            Some(Op::Set(..)) => "set",
            Some(Op::Grant(_)) => "grant",
            Some(Op::Revoke(_)) => "revoke",
            Some(Op::RotateKey) => "rotate-key",
            Some(Op::Owner(..)) => "meta",
        };
        *interrupted.entry(kind).or_default() += 1;
        drop(c);
        drop(client);
        s.kill9();
        s.serve();
        // Settle the one uncertain command, so the model is exact again.
        let touched: Vec<String> = ops
            .iter()
            .filter_map(|o| match o {
                Op::Set(n, _) | Op::Grant(n) | Op::Revoke(n) | Op::Owner(n, _) => Some(n.clone()),
                Op::RotateKey => None,
            })
            .collect();
        verify(&s, &model, in_flight.as_ref(), &touched).await;
        if let Some(op) = &in_flight {
            let client = Client::connect_unix(&s.socket).await.unwrap();
            let c = ctl(&client.attach("crash", "").await.unwrap())
                .await
                .unwrap();
            // Apply it again: every command is idempotent, so now it is certain.
            if let Op::Set(n, v) = op {
                send(&c, op).await.unwrap();
                model.values.insert(n.clone(), v.clone());
                all_names.push(n.clone());
            } else {
                send(&c, op).await.unwrap();
                match op {
                    Op::Grant(n) => {
                        model.granted.insert(n.clone());
                    }
                    Op::Revoke(n) => {
                        model.granted.remove(n);
                    }
                    Op::Owner(n, owner) => {
                        model.owners.insert(n.clone(), owner.clone());
                    }
                    _ => {}
                }
            }
        }
    }
    eprintln!("kills landed during: {interrupted:?}");
    // Finally every secret, not only those touched: all there, all decrypt.
    s.kill9();
    s.serve();
    let names: Vec<String> = model.values.keys().cloned().collect();
    for n in &names {
        if !model.granted.contains(n) {
            s.deploy_ok(&["secret", "grant", SERVICE, n]);
            model.granted.insert(n.clone());
        }
    }
    verify(&s, &model, None, &names).await;
}
