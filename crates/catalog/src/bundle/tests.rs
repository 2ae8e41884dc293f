use super::*;
use crate::format::{Format, LoadOptions, load};
use crate::plan::StoreFacts;

const CATALOG: &str = r#"
[tiers.local_dev]
core = true
[tiers.desktop]

[secrets.db_root]
class = "infrastructure"
[secrets.db_root.tiers.local_dev]
strategy = "serve"
[secrets.db_root.tiers.desktop]
strategy = "strip"

[secrets.jwt_key]
class = "service"
[secrets.jwt_key.tiers.desktop]
strategy = "generate"
template = "{{random:base64url:32}}"

[secrets.app_db]
class = "service"
[secrets.app_db.tiers.desktop]
strategy = "generate"
template = "file://{{USER_DATA}}/{{service}}-{{deployment}}.db"

[secrets.openrouter_key]
class = "user"
[secrets.openrouter_key.tiers.desktop]
strategy = "prompt"
label = "OpenRouter API key"
kind = "password"
pattern = "sk-or-.+"

[secrets.tg_token]
class = "user"
[secrets.tg_token.tiers.desktop]
strategy = "delegate"
ref = "github:acme/bot#TELEGRAM_TOKEN"
"#;

const MANIFEST: [&str; 5] = ["db_root", "jwt_key", "app_db", "openrouter_key", "tg_token"];

fn catalog() -> Catalog {
    load(CATALOG, Format::Toml, LoadOptions::default())
        .unwrap()
        .catalog
}

fn store() -> StoreFacts {
    let mut s = StoreFacts::default();
    s.values.insert("db_root".into());
    s
}

fn request(deployment: &str) -> IssueRequest<'_> {
    IssueRequest {
        service: "web",
        tier: "desktop",
        deployment,
        bundle: 1,
        issued: 1_767_225_600,
    }
}

#[test]
fn a_bundle_holds_generated_values_prompts_references_and_names() {
    let b = issue(&catalog(), &MANIFEST, &store(), &request("acme-7")).unwrap();
    assert_eq!(b.format, BUNDLE_FORMAT);
    assert_eq!(
        b.values.keys().collect::<Vec<_>>(),
        ["app_db", "jwt_key"],
        "only generated values"
    );
    assert_eq!(b.values["jwt_key"].len(), 43);
    assert_eq!(
        b.values["app_db"].expose(),
        b"file://{{USER_DATA}}/web-acme-7.db"
    );
    assert_eq!(b.prompts.len(), 1);
    assert_eq!(b.prompts[0].secret, "openrouter_key");
    assert_eq!(b.delegated[0].reference, "github:acme/bot#TELEGRAM_TOKEN");
    assert!(!b.delegated[0].present);
    let shipped: Vec<(&str, &Shipped)> = b
        .manifest
        .iter()
        .map(|e| (e.secret.as_str(), &e.shipped))
        .collect();
    assert_eq!(shipped[0], ("db_root", &Shipped::Strip));
    assert!(matches!(
        shipped[2].1,
        Shipped::Generate { target_placeholders, random: false } if target_placeholders == &["USER_DATA"]
    ));
    // Another deployment gets fresh values.
    let other = issue(&catalog(), &MANIFEST, &store(), &request("acme-8")).unwrap();
    assert_ne!(other.values["jwt_key"], b.values["jwt_key"]);
    // Debug never shows a value.
    let debug = format!("{b:?}");
    assert!(debug.contains("GeneratedValue(43 bytes)"), "{debug}");
    let jwt = String::from_utf8(b.values["jwt_key"].expose().to_vec()).unwrap();
    assert!(!debug.contains(&jwt));
}

#[test]
fn the_json_form_round_trips_with_values_in_base64() {
    let b = issue(&catalog(), &MANIFEST, &store(), &request("acme-7")).unwrap();
    let json = b.to_json();
    assert_eq!(json.capacity(), json.len(), "sized before it was written");
    let text = std::str::from_utf8(&json).unwrap();
    let doc: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        doc["values"]["app_db"],
        "ZmlsZTovL3t7VVNFUl9EQVRBfX0vd2ViLWFjbWUtNy5kYg=="
    );
    assert_eq!(doc["manifest"][1]["action"], "generate");
    assert_eq!(doc["manifest"][4]["ref"], "github:acme/bot#TELEGRAM_TOKEN");
    assert_eq!(doc["prompts"][0]["kind"], "password");
    assert_eq!(doc["prompts"][0]["pattern"], "sk-or-.+");
    assert_eq!(Bundle::from_json(&json).unwrap(), b);
    let prompts: PromptsFile = serde_json::from_slice(&b.prompts_json()).unwrap();
    assert_eq!(prompts.prompts, b.prompts);
    let manifest: serde_json::Value = serde_json::from_slice(&b.manifest_json()).unwrap();
    assert_eq!(manifest["deployment"], "acme-7");
    assert_eq!(manifest["secrets"][0]["action"], "strip");
    assert!(!String::from_utf8_lossy(&b.manifest_json()).contains("ZmlsZ"));
    let e = Bundle::from_json(br#"{"format":"srv-secrets-bundle/9"}"#).unwrap_err();
    assert!(e.contains("not a bundle") || e.contains("format"), "{e}");
}

#[test]
fn base64_decodes_only_what_it_encodes() {
    for raw in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\x00\xff\x10"] {
        let v = GeneratedValue::new(Zeroizing::new(raw.to_vec()));
        let json = serde_json::to_string(&v).unwrap();
        let back: GeneratedValue = serde_json::from_str(&json).unwrap();
        assert_eq!(back.expose(), raw);
    }
    for bad in ["Zg", "Zg=", "Zh==", "Z===", "Zm9v!", "===="] {
        assert!(decode_base64(bad.as_bytes()).is_none(), "{bad}");
    }
}

#[test]
fn an_incomplete_plan_gives_no_bundle_and_says_what_is_missing() {
    let mut manifest = MANIFEST.to_vec();
    manifest.push("api_jwt");
    let e = issue(&catalog(), &manifest, &store(), &request("acme-7")).unwrap_err();
    let BundleError::Incomplete { problems, .. } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(problems[0].id, "no-such-secret/web/api_jwt");
    assert!(e.to_string().contains("no-such-secret/web/api_jwt"), "{e}");
    // A secret that exists without a strategy for the tier.
    let mut c = catalog();
    c.set_meta("api_jwt", crate::MetaUpdate::default()).unwrap();
    let e = issue(&c, &manifest, &store(), &request("acme-7")).unwrap_err();
    assert!(e.to_string().contains("no-strategy/desktop/api_jwt"), "{e}");
    assert!(e.brief().len() <= 80);
}

#[test]
fn tiers_and_ids_are_checked_first() {
    let c = catalog();
    let s = store();
    let mut r = request("acme-7");
    r.tier = "local_dev";
    assert!(matches!(
        issue(&c, &MANIFEST, &s, &r),
        Err(BundleError::CoreTier { .. })
    ));
    r.tier = "mobile";
    assert!(matches!(
        issue(&c, &MANIFEST, &s, &r),
        Err(BundleError::UnknownTier { .. })
    ));
    for bad in ["", "..", "a/b", "a b"] {
        assert_eq!(
            issue(&c, &MANIFEST, &s, &request(bad)),
            Err(BundleError::DeploymentName)
        );
    }
    for e in [
        BundleError::CoreTier { tier: "t".into() },
        BundleError::DeploymentName,
        BundleError::UnknownTier { tier: "t".into() },
    ] {
        assert!(e.brief().len() <= 80, "{}", e.brief());
    }
}

#[test]
fn dotenv_lines_survive_any_bytes() {
    let mut b = issue(&catalog(), &MANIFEST, &store(), &request("acme-7")).unwrap();
    b.values.clear();
    let v = |s: &str| GeneratedValue::new(Zeroizing::new(s.as_bytes().to_vec()));
    b.values.insert("PLAIN".into(), v("a b\"$x\n"));
    b.values
        .insert("QUOTE".into(), v("it's $HOME `x` \\ \"q\"\r\n"));
    let text = b.dotenv().unwrap();
    assert_eq!(text.capacity(), text.len());
    assert_eq!(
        String::from_utf8(text.to_vec()).unwrap(),
        "PLAIN='a b\"$x\n'\nQUOTE=\"it's \\$HOME \\`x\\` \\\\ \\\"q\\\"\r\n\"\n"
    );
    b.values.insert("app.db".into(), v("x"));
    let e = b.dotenv().unwrap_err();
    assert!(e.contains("app.db is not a variable name"), "{e}");
}

#[test]
fn a_shell_reads_back_every_dotenv_value_exactly() {
    // What `set -a; . values.env` gives is what the bundle holds, whichever quoting a value
    // got: in a POSIX shell a backslash escapes only \\ " $ ` and a newline inside double
    // quotes, so a newline or a carriage return there must be written as itself.
    let mut b = issue(&catalog(), &MANIFEST, &store(), &request("acme-7")).unwrap();
    b.values.clear();
    let values: [(&str, &[u8]); 4] = [
        ("PLAIN", b"a b\"$x\n\\n"),
        ("QUOTE_NL", b"it's\nline two\r\n"),
        ("QUOTE_ALL", b"it's $HOME `x` \\ \"q\" \\n\t\r\n"),
        ("QUOTE_END", b"'\n"),
    ];
    for (name, value) in values {
        b.values.insert(
            name.into(),
            GeneratedValue::new(Zeroizing::new(value.to_vec())),
        );
    }
    let text = b.dotenv().unwrap();
    for (name, value) in values {
        // The file, then a line that prints the variable: what sourcing it does.
        let mut script = text.to_vec();
        script.extend_from_slice(format!("printf %s \"${name}\"\n").as_bytes());
        let mut sh = std::process::Command::new("sh")
            .arg("-s")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut sh.stdin.take().unwrap(), &script).unwrap();
        let out = sh.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, value, "{name}");
    }
}
