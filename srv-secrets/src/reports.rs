//! The deployment reports as documents: a plan, the lint and the catalog, made once for
//! every surface that serves them (the ctl answer's body, the admin tree's
//! `secrets/plans/SERVICE/TIER` and `secrets/lint`, and the HTTP API), so that each says
//! the same bytes as `deploy secret plan --json` prints.

use zeroize::Zeroizing;

/// Pretty JSON, ending in a newline, as `deploy ... --json` prints it. The reports are maps
/// with string keys, which JSON always represents; a failure is logged and answered `{}`.
pub fn pretty_json<T: serde::Serialize>(value: &T) -> Zeroizing<Vec<u8>> {
    let mut out = serde_json::to_vec_pretty(value).unwrap_or_else(|e| {
        tracing::error!(error = %e, "a report could not be made into JSON");
        b"{}".to_vec()
    });
    out.push(b'\n');
    Zeroizing::new(out)
}
