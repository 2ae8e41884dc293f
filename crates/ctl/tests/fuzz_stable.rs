//! The fuzz target of `crates/ctl/fuzz`, driven on stable with bounded random input so
//! that CI runs it (`cargo test`) without a nightly toolchain: `ctl::fuzzing::fuzz_ctl`
//! on pure noise, on streams of plausible commands (their names and values often long
//! runs of letters and digits, which no error may echo), and on those streams with bytes
//! flipped, cut, spliced and literals miscounted, each cut into writes of its own sizes.
//! Inputs that once failed go in `REGRESSIONS`.

use ctl::fuzzing::fuzz_ctl;

/// Inputs found earlier, kept as regression tests (the first byte picks the writes).
const REGRESSIONS: &[&[u8]] = &[
    // A literal whose header is split across writes, then a miscounted one.
    b"\x01set a {3}\nabc\nset b {5}\nab\n",
    // Quotes left open across a transaction.
    b"\x07begin\nset a 'Zq9xK2mP8vL4nR7tY1wQ5eHj\ncommit\n",
];

/// xorshift64*: small, deterministic, good enough to make inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
        words[self.below(words.len())]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// A run of letters and digits, like a generated secret.
    fn secret(&mut self, n: usize) -> String {
        const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..n)
            .map(|_| char::from(ALNUM[self.below(ALNUM.len())]))
            .collect()
    }
    /// A name: valid most of the time, sometimes long (a secret-like run), sometimes not
    /// a name at all.
    fn name(&mut self) -> String {
        match self.below(8) {
            0 => {
                let n = 24 + self.below(120);
                self.secret(n)
            }
            1 => self
                .pick(&["..", ".", "a/b", "", "x y", "caf\u{e9}", "-", "admin"])
                .into(),
            2 => "n".repeat(129),
            _ => self
                .pick(&["db", "api_key", "web", "tls.crt", "a-b", "x1"])
                .into(),
        }
    }
    /// A value as a token: bare, quoted, or a literal (now and then miscounted).
    fn value(&mut self) -> Vec<u8> {
        let raw: Vec<u8> = match self.below(4) {
            0 => {
                let n = 20 + self.below(40);
                self.secret(n).into_bytes()
            }
            1 => {
                let n = self.below(40);
                self.bytes(n)
            }
            2 => Vec::new(),
            _ => format!("s3cret-{}", self.secret(24)).into_bytes(),
        };
        match self.below(4) {
            0 if !raw.is_empty() && raw.iter().all(u8::is_ascii_alphanumeric) => raw,
            1 => {
                let mut q = vec![b'\''];
                for &b in &raw {
                    if b == b'\'' {
                        q.push(b'\'');
                    }
                    q.push(b);
                }
                q.push(b'\'');
                q
            }
            2 => {
                let n = (raw.len() + self.below(3)).saturating_sub(1);
                let mut l = format!("{{{n}}}\n").into_bytes();
                l.extend_from_slice(&raw);
                l
            }
            _ => {
                let mut l = format!("{{{}}}\n", raw.len()).into_bytes();
                l.extend_from_slice(&raw);
                l
            }
        }
    }
    fn duration(&mut self) -> String {
        self.pick(&[
            "30s",
            "15m",
            "12h",
            "90d",
            "2w",
            "0s",
            "3651d",
            "1x",
            "",
            "99999999999d",
        ])
        .into()
    }
    /// One plausible command line, without its newline.
    fn line(&mut self) -> Vec<u8> {
        let mut words: Vec<Vec<u8>> = Vec::new();
        macro_rules! w {
            ($word:expr) => {{
                let word = String::from($word);
                words.push(word.into_bytes());
            }};
        }
        match self.below(26) {
            0 => {
                w!("set");
                w!(&self.name());
                words.push(self.value());
            }
            1 => {
                w!("delete");
                w!(&self.name());
            }
            2 => {
                w!("grant");
                w!(&self.name());
                w!(&self.name());
                if self.below(2) == 0 {
                    w!("expires");
                    w!(&self.duration());
                }
            }
            3 => {
                w!(self.pick(&["revoke", "revoke-all"]));
                w!(&self.name());
                w!(&self.name());
            }
            4 => {
                w!("stage");
                w!(&self.name());
                if self.below(2) == 0 {
                    w!("generate");
                    w!(self.pick(&["'{{random:hex:8}}'", "'{{'", "x"]));
                } else {
                    words.push(self.value());
                }
            }
            5 => {
                w!("promote");
                w!(&self.name());
                match self.below(3) {
                    0 => {
                        w!("overlap");
                        w!(&self.duration());
                    }
                    1 => w!("revoke-previous"),
                    _ => {}
                }
            }
            6 => {
                w!(self.pick(&["discard", "rollback", "retire", "history", "holders"]));
                w!(&self.name());
            }
            7 => w!(self.pick(&[
                "stale",
                "matrix",
                "freeze",
                "unfreeze",
                "rotate-key",
                "help",
                "begin",
                "commit",
                "abort",
            ])),
            8 => {
                w!("reason");
                words.push(self.value());
            }
            9 => {
                w!("service");
                w!(&self.name());
                match self.below(5) {
                    0 => {
                        w!("uid");
                        w!(self.pick(&["1001", "0", "4294967295", "-1", "x"]));
                    }
                    1 => {
                        w!("manifest");
                        words.push(self.value());
                    }
                    2 => {
                        w!("tiers");
                        w!(self.pick(&["prod,staging", "''", "*", ",,"]));
                    }
                    _ => w!(self.pick(&["remove", "suspend", "resume", "frob"])),
                }
            }
            10 => {
                w!("tier");
                w!(self.pick(&["add", "remove", "frob"]));
                w!(&self.name());
                if self.below(2) == 0 {
                    w!("core");
                }
            }
            11 => {
                w!("meta");
                w!(&self.name());
                w!(self.pick(&["class", "owner", "rotate-every", "description", "remove"]));
                words.push(self.value());
            }
            12 => {
                w!("strategy");
                w!(&self.name());
                w!("tier");
                w!(&self.name());
                match self.below(5) {
                    0 => w!("strip"),
                    1 => {
                        w!("generate");
                        w!("'{{random:base64url:32}}'");
                    }
                    2 => {
                        w!("prompt");
                        w!("'Label'");
                        w!(self.pick(&["help", "kind", "pattern", "min", "max", "optional"]));
                        words.push(self.value());
                    }
                    3 => {
                        w!("delegate");
                        words.push(self.value());
                    }
                    _ => w!("serve"),
                }
            }
            13 => {
                w!("present");
                w!(&self.name());
                w!("tier");
                w!(&self.name());
                w!(self.pick(&["yes", "no", "maybe"]));
            }
            14 => {
                w!("generate");
                w!(&self.name());
            }
            15 => {
                w!("plan");
                w!(&self.name());
                w!(&self.name());
            }
            16 => {
                w!("lint");
            }
            17 => {
                w!("catalog");
                w!(self.pick(&["export", "apply"]));
                w!(self.pick(&["toml", "json", "dry-run", "prune", "with-values"]));
                words.push(self.value());
            }
            18 => {
                w!("bundle");
                match self.below(3) {
                    0 => {
                        w!("create");
                        w!(&self.name());
                        w!(&self.name());
                        w!(&self.name());
                    }
                    1 => {
                        w!("list");
                        w!(self.pick(&["deployment", "secret"]));
                        w!(&self.name());
                    }
                    _ => {
                        w!("identify");
                        words.push(self.value());
                    }
                }
            }
            19 => {
                w!("audit");
                match self.below(3) {
                    0 => w!("head"),
                    1 => {
                        w!("since");
                        w!(&self.name());
                        w!(self.pick(&["0", "17", "9999999999999999999", "x"]));
                        w!("limit");
                        w!("10");
                    }
                    _ => {
                        w!("verify");
                        w!("head");
                        let long = self.secret(30);
                        w!(self.pick(&["changes:3:abcd", "'a b'", &long]));
                    }
                }
            }
            // An unknown word, sometimes a long run, and a verb with too many words.
            20 => {
                let n = self.below(40) + 1;
                w!(&self.secret(n));
            }
            21 => {
                w!("set");
                w!(&self.name());
                words.push(self.value());
                words.push(self.value());
            }
            _ => {
                w!(self.pick(&["set", "grant", "service", "bundle", "catalog", "audit"]));
                words.push(self.value());
            }
        }
        let mut line = Vec::new();
        for (i, word) in words.iter().enumerate() {
            if i > 0 {
                line.extend_from_slice(if self.below(8) == 0 { b" \t " } else { b" " });
            }
            line.extend_from_slice(word);
        }
        line
    }
    /// A stream: a few lines, sometimes in a transaction, CRLF or LF.
    fn stream(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let txn = self.below(3) == 0;
        if txn {
            out.extend_from_slice(b"begin\n");
        }
        for _ in 0..=self.below(6) {
            out.extend(self.line());
            out.extend_from_slice(if self.below(6) == 0 { b"\r\n" } else { b"\n" });
        }
        if txn && self.below(4) != 0 {
            out.extend_from_slice(self.pick(&["commit\n", "abort\n", "commit"]).as_bytes());
        }
        out
    }
    fn mutate(&mut self, mut b: Vec<u8>) -> Vec<u8> {
        match self.below(6) {
            0 => {
                for _ in 0..=self.below(4) {
                    let i = self.below(b.len());
                    if let Some(x) = b.get_mut(i) {
                        *x ^= 1 << self.below(8);
                    }
                }
            }
            1 => b.truncate(self.below(b.len() + 1)),
            2 => {
                let extra = self.pick(&["'", "{", "}", "\n", "{3}\n", "''", "\0", "\r"]);
                let at = self.below(b.len() + 1);
                b.splice(at..at, extra.bytes());
            }
            3 => {
                let i = self.below(b.len());
                if let Some(x) = b.get_mut(i) {
                    *x = [0, 0xff, b'\'', b'\n', b' '][self.below(5)];
                }
            }
            _ => {}
        }
        b
    }
}

#[test]
fn regressions() {
    for input in REGRESSIONS {
        fuzz_ctl(input);
    }
}

#[test]
fn the_ctl_language_on_random_and_mutated_streams() {
    let mut rng = Rng(0x0c71_5eed_f00d_cafe);
    // How much of the language the inputs reach: commands that parse, lines refused.
    let (mut commands, mut valid, mut errors) = (0, 0, 0);
    for _ in 0..20_000 {
        let cut = rng.next() as u8;
        let body = match rng.below(5) {
            0 => {
                let n = rng.below(200);
                rng.bytes(n)
            }
            1 | 2 => rng.stream(),
            _ => {
                let s = rng.stream();
                rng.mutate(s)
            }
        };
        let mut input = vec![cut];
        input.extend(body);
        fuzz_ctl(&input);
        let mut buffer = ctl::CtlBuffer::new();
        buffer.push(&input[1..]);
        while let Some(next) = buffer.next_command().or_else(|| buffer.finish()) {
            match next {
                Ok(parsed) => {
                    commands += 1;
                    valid += usize::from(parsed.command.validate().is_ok());
                }
                Err(_) => errors += 1,
            }
        }
    }
    eprintln!("{commands} commands parsed ({valid} valid, round-tripped), {errors} lines refused");
    assert!(
        valid > 5_000 && errors > 10_000,
        "{commands} commands, {errors} errors"
    );
}
