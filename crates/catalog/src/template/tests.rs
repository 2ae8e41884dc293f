use proptest::prelude::*;

use super::*;

fn render(t: &str) -> String {
    Template::parse(t)
        .unwrap()
        .render(&RenderContext::default())
        .unwrap()
        .to_string()
}

fn err(t: &str) -> TemplateError {
    Template::parse(t).unwrap_err()
}

/// Bytes 0, 1, 2, ... 255, 0, ...: every value equally often.
fn counting() -> impl FnMut(&mut [u8]) -> Result<(), TemplateError> {
    let mut next = 0u8;
    move |buf: &mut [u8]| {
        for b in buf {
            *b = next;
            next = next.wrapping_add(1);
        }
        Ok(())
    }
}

#[test]
fn the_issues_examples() {
    let key = render("{{random:hex:32}}");
    assert_eq!(key.len(), 64);
    assert!(
        key.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_ne!(key, render("{{random:hex:32}}"));

    assert_eq!(
        render("file://{{USER_DATA}}/app.db"),
        "file://{{USER_DATA}}/app.db"
    );

    let url = render("postgres://app:{{password:24}}@db/app");
    let password = url
        .strip_prefix("postgres://app:")
        .and_then(|r| r.strip_suffix("@db/app"))
        .unwrap();
    assert_eq!(password.len(), 24);
    assert!(
        password
            .bytes()
            .all(|b| DEFAULT_ALPHABET.as_bytes().contains(&b))
    );
}

#[test]
fn encodings_have_their_lengths_and_alphabets() {
    let b64 = render("{{random:base64:32}}");
    assert_eq!(b64.len(), 44);
    assert!(b64.ends_with('='));
    let url = render("{{random:base64url:32}}");
    assert_eq!(url.len(), 43);
    assert!(
        url.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(render("{{random:base64:9}}").len(), 12);
}

#[test]
fn base64_matches_rfc_4648() {
    for (raw, padded, unpadded) in [
        ("", "", ""),
        ("f", "Zg==", "Zg"),
        ("fo", "Zm8=", "Zm8"),
        ("foo", "Zm9v", "Zm9v"),
        ("foob", "Zm9vYg==", "Zm9vYg"),
        ("fooba", "Zm9vYmE=", "Zm9vYmE"),
        ("foobar", "Zm9vYmFy", "Zm9vYmFy"),
    ] {
        let mut out = String::new();
        push_base64(&mut out, raw.as_bytes(), BASE64, true);
        assert_eq!(out, padded);
        assert_eq!(out.len(), Encoding::Base64.encoded_len(raw.len()));
        let mut out = String::new();
        push_base64(&mut out, raw.as_bytes(), BASE64URL, false);
        assert_eq!(out, unpadded);
        assert_eq!(out.len(), Encoding::Base64Url.encoded_len(raw.len()));
    }
    let mut out = String::new();
    push_base64(&mut out, &[0xfb, 0xff], BASE64URL, false);
    assert_eq!(out, "-_8");
    push_hex(&mut out, &[0x00, 0xab, 0xff]);
    assert_eq!(out, "-_800abff");
}

#[test]
fn uuids_are_version_4() {
    let t = Template::parse("{{uuid}}").unwrap();
    let all_ones = t
        .render_with(&RenderContext::default(), &mut |b: &mut [u8]| {
            b.fill(0xff);
            Ok(())
        })
        .unwrap();
    assert_eq!(*all_ones, "ffffffff-ffff-4fff-bfff-ffffffffffff");
    let random = render("{{uuid}}");
    assert_eq!(random.len(), 36);
    assert_eq!(&random[14..15], "4");
    assert!("89ab".contains(&random[19..20]));
    assert_eq!(
        random
            .match_indices('-')
            .map(|(i, _)| i)
            .collect::<Vec<_>>(),
        [8, 13, 18, 23]
    );
}

#[test]
fn passwords_have_no_modulo_bias() {
    // 3 letters: byte 255 is the one above the largest multiple of 3 (255), so it is
    // dropped, and 0..=254 give each letter exactly 85 times.
    let t = Template::parse("{{password:255:abc}}").unwrap();
    let value = t
        .render_with(&RenderContext::default(), &mut counting())
        .unwrap();
    for letter in ['a', 'b', 'c'] {
        assert_eq!(
            value.chars().filter(|&c| c == letter).count(),
            85,
            "{letter}"
        );
    }
    // With byte 255 taken modulo 3 instead, `a` would come up 86 times.
}

#[test]
fn passwords_use_their_alphabet() {
    let value = render("{{password:64:0123456789abcdef}}");
    assert_eq!(value.len(), 64);
    assert!(value.bytes().all(|b| b"0123456789abcdef".contains(&b)));
    // `:` belongs to the alphabet: only the first two colons separate.
    let value = render("{{password:40:!:#$%&'()*+,-./;<=>?@[]^_`|~}}");
    assert!(
        value
            .bytes()
            .all(|b| b"!:#$%&'()*+,-./;<=>?@[]^_`|~".contains(&b))
    );
}

#[test]
fn context_placeholders_need_their_context() {
    let t = Template::parse("{{deployment}}/{{service}}/{{tier}}").unwrap();
    let full = RenderContext {
        deployment: Some("d-1"),
        service: Some("web"),
        tier: Some("desktop"),
    };
    assert_eq!(*t.render(&full).unwrap(), "d-1/web/desktop");
    let no_service = RenderContext {
        service: None,
        ..full
    };
    let e = t.render(&no_service).unwrap_err();
    assert_eq!(
        e,
        TemplateError::Missing {
            at: 15,
            what: "service",
            needs: "service name"
        }
    );
    assert_eq!(
        e.to_string(),
        "at byte 15: {{service}} needs the service name, and none was given"
    );
    // Nothing random is drawn before the context is found missing.
    let t = Template::parse("{{random:hex:8}}{{tier}}").unwrap();
    let mut drawn = false;
    let e = t
        .render_with(&RenderContext::default(), &mut |_: &mut [u8]| {
            drawn = true;
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(e, TemplateError::Missing { at: 16, .. }));
    assert!(!drawn);
}

#[test]
fn rng_failure_is_an_error() {
    let t = Template::parse("{{password:20}}").unwrap();
    let e = t
        .render_with(&RenderContext::default(), &mut |_: &mut [u8]| {
            Err(TemplateError::Random)
        })
        .unwrap_err();
    assert_eq!(e, TemplateError::Random);
}

#[test]
fn literals_and_lone_braces_pass_through() {
    assert_eq!(render(""), "");
    assert_eq!(render("plain"), "plain");
    assert_eq!(render("{a}}b}"), "{a}}b}");
    assert_eq!(
        render("{\"k\": \"{{ENV:HOME}}\"}"),
        "{\"k\": \"{{ENV:HOME}}\"}"
    );
    assert_eq!(render("é{{TARGET:a/b.c-d_e}}ü"), "é{{TARGET:a/b.c-d_e}}ü");
}

#[test]
fn target_placeholders_are_listed_once_in_order() {
    let t = Template::parse("{{B}}{{A}}{{B}}{{ENV:X}}{{uuid}}").unwrap();
    assert_eq!(t.target_placeholders(), ["B", "A", "ENV:X"]);
    assert!(t.is_random());
    assert!(!Template::parse("file://{{USER_DATA}}").unwrap().is_random());
}

#[test]
fn faults_are_placed() {
    use TemplateError::*;
    let cases: Vec<(&str, TemplateError)> = vec![
        ("ab{{uuid", Unclosed { at: 2 }),
        ("x{{}}", Empty { at: 1 }),
        (
            "{{rand}}",
            Unknown {
                at: 2,
                name: "`rand`".into(),
            },
        ),
        (
            "{{random:hex}}",
            Arguments {
                at: 2,
                placeholder: "random",
                form: RANDOM_FORM,
            },
        ),
        (
            "{{random:hex:}}",
            Arguments {
                at: 13,
                placeholder: "random",
                form: RANDOM_FORM,
            },
        ),
        ("{{random:b32:16}}", Encoding { at: 9 }),
        (
            "{{uuid:4}}",
            Arguments {
                at: 2,
                placeholder: "uuid",
                form: "{{uuid}}",
            },
        ),
        (
            "{{password}}",
            Arguments {
                at: 2,
                placeholder: "password",
                form: PASSWORD_FORM,
            },
        ),
        (
            "{{ENV}}",
            TemplateError::Arguments {
                at: 2,
                placeholder: "ENV",
                form: "{{ENV:NAME}}, NAME a variable name ([A-Za-z_][A-Za-z0-9_]*)",
            },
        ),
        (
            "{{password:10:a}}",
            Alphabet {
                at: 14,
                reason: "a password alphabet has at least 2 characters",
            },
        ),
        (
            "{{password:64:abca}}",
            Alphabet {
                at: 17,
                reason: "this character is already in the alphabet (each is listed once)",
            },
        ),
        (
            "{{password:8}}",
            Weak {
                at: 11,
                bits: 47,
                min: 64,
            },
        ),
        (
            "{{password:63:ab}}",
            Weak {
                at: 11,
                bits: 63,
                min: 64,
            },
        ),
    ];
    for (template, expected) in cases {
        assert_eq!(err(template), expected, "{template}");
    }
    for (template, at) in [
        ("{{ uuid }}", 2),
        ("{{uuid }}", 6),
        ("{{1}}", 2),
        ("{{User_Data}}", 3),
        ("{{random:hex:3x}}", 14),
        ("{{FOO:a b}}", 7),
        ("{{FOO:}}", 6),
        ("{{password:40:a b}}", 15),
        ("{{password:40:ab{}}", 16),
    ] {
        let e = err(template);
        let found = match e {
            BadByte { at, .. } | Alphabet { at, .. } => at,
            other => panic!("{template}: {other:?}"),
        };
        assert_eq!(found, at, "{template}: {e}");
    }
    assert!(matches!(
        err("{{random:hex:7}}"),
        Count { at: 13, min: 8, .. }
    ));
    assert!(matches!(
        err("{{random:hex:1025}}"),
        Count { max: 1024, .. }
    ));
    assert!(matches!(err("{{random:hex:99999999999}}"), Count { .. }));
    assert!(matches!(err("{{password:1025}}"), Count { .. }));
    assert!(matches!(err("{{password:0}}"), Count { .. }));
    assert!(
        Template::parse("{{password:16:0123456789abcdef}}").is_ok(),
        "64 bits exactly"
    );
    assert!(Template::parse("{{random:hex:8}}{{random:base64url:1024}}").is_ok());
}

#[test]
fn limits() {
    assert_eq!(
        err(&"x".repeat(MAX_TEMPLATE_LEN + 1)),
        TemplateError::TooLong {
            limit: MAX_TEMPLATE_LEN
        }
    );
    assert!(Template::parse(&"{{uuid}}".repeat(MAX_PLACEHOLDERS)).is_ok());
    assert_eq!(
        err(&"{{uuid}}".repeat(MAX_PLACEHOLDERS + 1)),
        TemplateError::TooManyPlaceholders {
            limit: MAX_PLACEHOLDERS
        }
    );
    // The largest value a template can make stays far below the store's 1 MiB.
    let biggest = "{{random:base64:1024}}".repeat(MAX_PLACEHOLDERS);
    assert!(biggest.len() <= MAX_TEMPLATE_LEN);
    assert!(render(&biggest).len() < 100_000);
}

#[test]
fn errors_do_not_echo_the_template() {
    for t in [
        "hunter2{{HUNTER2",
        "{{hunter-two-is-a-very-long-keyword-indeed}}",
        "hunter2{{password:8:hunter}}",
        "{{random:hunter2:8}}",
        "{{ENV:hunter 2}}",
    ] {
        let message = err(t).to_string();
        assert!(!message.contains("hunter"), "{t}: {message}");
    }
}

#[test]
fn serde_checks_templates() {
    let t: Template = serde_json::from_str("\"{{uuid}}-x\"").unwrap();
    assert_eq!(t.source(), "{{uuid}}-x");
    assert_eq!(serde_json::to_string(&t).unwrap(), "\"{{uuid}}-x\"");
    let e = serde_json::from_str::<Template>("\"{{nope}}\"").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("template at byte 2: unknown placeholder `nope`"),
        "{e}"
    );
}

proptest! {
    #[test]
    fn any_text_parses_or_fails_without_panic(text in any::<String>()) {
        if let Ok(t) = Template::parse(&text) {
            prop_assert_eq!(t.source(), text.as_str());
        }
    }

    #[test]
    fn template_like_text_renders_or_fails_cleanly(
        text in "([{}:a-zA-Z0-9_]|random|password|hex|base64|uuid|tier|ENV|\\{\\{|\\}\\}|:[0-9]{1,4}){0,24}"
    ) {
        match Template::parse(&text) {
            Ok(t) => {
                let context = RenderContext {
                    deployment: Some("d"),
                    service: Some("s"),
                    tier: Some("t"),
                };
                let value = t.render(&context).unwrap();
                prop_assert_eq!(t.source(), text.as_str());
                if !t.is_random() && !text.contains("{{deployment}}")
                    && !text.contains("{{service}}") && !text.contains("{{tier}}") {
                    prop_assert_eq!(value.as_str(), text.as_str());
                }
            }
            Err(e) => {
                let at = match e {
                    TemplateError::Unclosed { at }
                    | TemplateError::Empty { at }
                    | TemplateError::BadByte { at, .. }
                    | TemplateError::Unknown { at, .. }
                    | TemplateError::Arguments { at, .. }
                    | TemplateError::Encoding { at }
                    | TemplateError::Count { at, .. }
                    | TemplateError::Weak { at, .. }
                    | TemplateError::Alphabet { at, .. } => at,
                    other => return Err(TestCaseError::fail(format!("{other:?}"))),
                };
                prop_assert!(at < text.len());
            }
        }
    }
}
