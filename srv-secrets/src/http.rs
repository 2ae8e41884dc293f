//! The plan API for deployment managers that do not speak 9P: JSON over HTTP on a unix
//! socket or over TLS (axum on hyper), `srv-secrets serve --http unix:PATH` or `--http
//! tls:HOST:PORT` (with the certificates of the 9P TLS listeners).
//!
//! Who asks is decided as for 9P, from the connection: the peer's uid (SO_PEERCRED) or
//! the name its TLS client certificate gives ([`crate::principal`]), never anything else
//! the client sends. On TLS without a client certificate, where the connection proves
//! no one, each request proves itself with an API token, `Authorization: Bearer TOKEN`,
//! checked as 9P's Tauth checks one ([`Vault::authenticate_token`]: constant time, the
//! same cost whatever is wrong). One identity per request: a Bearer header on a
//! connection that already says who it is (a uid, a certificate) is a 400. The API is
//! the admin's (root, the uid that ran `init`, a certificate naming `admin`, or an admin
//! token): a service, or anyone else, gets 403 and learns nothing else; a request
//! without a token where one is needed, or with one that does not hold, gets 401 with
//! `WWW-Authenticate: Bearer`. Errors are JSON, `{"error": "..."}`, with their status
//! (400, 401, 403, 404, 405, 408, 409, 413, 503), and never hold a token.
//!
//! | endpoint | what |
//! |---|---|
//! | `GET /health/ready` | 200 `{"ready": true, ...}` when the store answers and the key file matches it, else 503 with what is wrong |
//! | `GET /metrics` | Prometheus text: requests, errors, open fids, connections, rotation progress; never a name or value |
//! | `GET /deployment/secrets?service=S&tier=T` | the plan (`scenario=S` is an alias), as `deploy secret plan --json` prints it |
//! | `GET /lint[?tier=T]` | the lint, as `deploy secret lint --json` prints it |
//! | `GET /catalog[?format=json\|toml]` | the catalog, as `deploy catalog export` writes it; no values |
//! | `POST /deployment/bundle` | body `{"service": S, "tier": T, "deployment": ID}` (and `"replace": true`): issues a bundle, answered with its `json` form (values generated for it, in base64); 409 for a deployment id already used, or a plan with problems |
//!
//! The reports are the same bytes the admin tree's files and the ctl answers carry
//! ([`crate::reports`]). The identity of a request is one extractor ([`Caller`]); a change
//! made with a token is recorded as the admin's, with the token's ID.
//!
//! The socket is mode 0666, so any local user can connect, and a TLS listener takes
//! anyone who reaches it: connections are capped and timed as the 9P core's are, by who
//! holds them ([`serve`]). The admin has [`MAX_ADMIN_CONNECTIONS`], each closed once it
//! takes [`ADMIN_HEAD_TIMEOUT`] to send a request's head (or sits that long between
//! requests); everyone else, who can only be told 403, has [`MAX_OTHER_CONNECTIONS`] in
//! all and [`MAX_OTHER_CONNECTIONS_PER_UID`] per uid or certificate name, one request per
//! connection, and [`OTHER_HEAD_TIMEOUT`]. A connection without a certificate is one of
//! those until a request on it proves the admin with a token: it then moves to slots of
//! its own ([`MAX_TOKEN_ADMIN_CONNECTIONS`]), as a 9P connection moves to its token's
//! principal, and is kept alive while each request proves the admin again; one that does
//! not is closed after its answer. More are closed on accept. TLS handshakes run
//! in tasks of their own, at most [`MAX_HANDSHAKES`] at once (the oldest abandoned for a
//! new one), each for at most [`HANDSHAKE_TIMEOUT`]. A request's head is at most
//! [`MAX_HEAD_LEN`] bytes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::connect_info::ConnectInfo;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use ninep::server::{Handshakes, Peer, ServerStats, Shutdown, Transport};
use secrets::{Actor, Applied, Change, Vault};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixStream;
use tracing::{debug, info, warn};

use crate::principal::{Principal, needs_token, principal_of, principal_of_token};
use crate::reports::pretty_json;
use crate::serve::Bound;

/// What the API serves from.
#[derive(Clone)]
pub struct Api {
    vault: Arc<Vault>,
    /// The 9P server's counters, read at each `/metrics`.
    nine_p: Arc<dyn Fn() -> ServerStats + Send + Sync>,
    counters: Arc<Counters>,
}

/// The API's own counters.
#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    /// Connections closed on accept, their holder's slots all taken.
    refused: AtomicU64,
}

impl Api {
    /// An API over `vault`, reporting the 9P server's counters with `nine_p`.
    pub fn new(vault: Arc<Vault>, nine_p: Arc<dyn Fn() -> ServerStats + Send + Sync>) -> Api {
        Api {
            vault,
            nine_p,
            counters: Arc::default(),
        }
    }

    /// The routes.
    pub fn router(self) -> Router {
        Router::new()
            .route("/health/ready", get(ready))
            .route("/metrics", get(metrics))
            .route("/deployment/secrets", get(deployment_secrets))
            .route("/lint", get(lint))
            .route("/catalog", get(catalog))
            .route("/deployment/bundle", post(deployment_bundle))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(self)
    }
}

/// The peer of a unix connection, as the kernel tells it; None without credentials
/// (never served).
fn unix_peer(stream: &UnixStream) -> Option<Peer> {
    let cred = stream.peer_cred().ok()?;
    Some(Peer {
        transport: Transport::Unix,
        uid: Some(cred.uid()),
        gid: Some(cred.gid()),
        pid: cred.pid(),
        certificate: None,
        addr: format!("http:uid={}", cred.uid()),
    })
}

/// An error as the API answers it.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// The admin, proven by the connection (with the connection's uid, if it has one, for
/// the changes it makes) or, on a connection that proves no one, by the request's admin
/// token; any other caller is refused (see [`FromRequestParts`] below).
pub struct Caller {
    uid: Option<u32>,
    /// The ID of the API token that proved the admin (never the token).
    token: Option<String>,
}

impl Caller {
    /// Who makes the changes this request asks for, for the audit trail.
    fn actor(&self) -> Actor {
        let actor = Actor::admin(self.uid);
        match &self.token {
            Some(id) => actor.with_token(id.as_str()),
            None => actor,
        }
    }
}

/// `WWW-Authenticate` of a request that needs a token and sent none (RFC 6750).
const CHALLENGE: &str = "Bearer realm=\"srv-secrets\"";
/// ... that sent one that does not hold.
const CHALLENGE_INVALID: &str = "Bearer realm=\"srv-secrets\", error=\"invalid_token\"";
/// ... that sent one of a service, which this API does not take.
const CHALLENGE_SCOPE: &str = "Bearer realm=\"srv-secrets\", error=\"insufficient_scope\"";

/// Set by [`Caller`] when a request proved the admin; read by [`close_unless_proven`].
#[derive(Clone, Default)]
struct Proven(Arc<std::sync::atomic::AtomicBool>);

impl FromRequestParts<Api> for Caller {
    type Rejection = Response;

    /// Over a unix socket or TLS with a client certificate, the connection decides, and
    /// a request that carries `Authorization` as well is refused (400): one identity per
    /// request. Over TLS without one, the request's `Authorization: Bearer TOKEN` does:
    /// an admin token is the admin (the connection moves to the token admin's slots);
    /// none, another scheme, or a token that does not hold is 401; a service's token 403.
    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Self, Self::Rejection> {
        api.counters.requests.fetch_add(1, Ordering::Relaxed);
        let refuse = || {
            failed(
                api,
                ApiError(
                    StatusCode::FORBIDDEN,
                    "forbidden: this API is the admin's (root, or the uid that ran srv-secrets \
                     init; over TLS, a client certificate whose CN is admin, or an admin token)"
                        .into(),
                ),
            )
        };
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<Peer>>().cloned() else {
            return Err(refuse());
        };
        let mut authorization = parts.headers.get_all(header::AUTHORIZATION).iter();
        let (first, more) = (authorization.next(), authorization.next().is_some());
        if more {
            return Err(failed(
                api,
                bad_request(
                    "one Authorization header per request: a request has one identity".into(),
                ),
            ));
        }
        if !needs_token(&peer) {
            if first.is_some() {
                let by = if peer.uid.is_some() {
                    "your uid"
                } else {
                    "its client certificate"
                };
                return Err(failed(
                    api,
                    bad_request(format!(
                        "this connection already says who you are ({by}), and a request has \
                         one identity: send no Authorization header on it"
                    )),
                ));
            }
            return match principal_of(&api.vault, &peer) {
                Ok(Principal::Admin) => Ok(Caller {
                    uid: peer.uid,
                    token: None,
                }),
                other => {
                    debug!(peer = %peer.addr, admitted = other.is_ok(), "HTTP request refused");
                    Err(refuse())
                }
            };
        }
        let Some(value) = first else {
            return Err(unauthorized(
                api,
                CHALLENGE,
                "unauthorized: this connection has no client certificate: send \
                 Authorization: Bearer TOKEN with an admin token (deploy token create admin), \
                 or connect with a client certificate whose CN is admin"
                    .into(),
            ));
        };
        let Some(token) = bearer(value.as_bytes()) else {
            return Err(unauthorized(
                api,
                CHALLENGE,
                "unauthorized: this API takes Authorization: Bearer TOKEN (an admin token, \
                 deploy token create admin), and no other scheme"
                    .into(),
            ));
        };
        let holder = match api.vault.authenticate_token(token) {
            Ok(holder) => holder,
            Err(refused) => {
                debug!(peer = %peer.addr, %refused, "HTTP request's bearer token refused");
                let text = refused.to_string();
                let why = text.strip_prefix("permission denied: ").unwrap_or(&text);
                return Err(unauthorized(
                    api,
                    CHALLENGE_INVALID,
                    format!(
                        "unauthorized: {why}; make a new one with deploy token create admin \
                         (deploy token list shows them)"
                    ),
                ));
            }
        };
        match principal_of_token(&holder) {
            Principal::Admin => {}
            Principal::Service { name, .. } => {
                debug!(peer = %peer.addr, token = %holder.id, service = %name,
                    "HTTP request refused: a service's token");
                let mut response = failed(
                    api,
                    ApiError(
                        StatusCode::FORBIDDEN,
                        format!(
                            "forbidden: token {} is service {name}'s, and this API is the \
                             admin's: use a token made for the admin (deploy token create \
                             admin)",
                            holder.id
                        ),
                    ),
                );
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(CHALLENGE_SCOPE),
                );
                return Err(response);
            }
        }
        if let Some(slot) = parts.extensions.get::<Arc<ConnectionSlot>>()
            && !slot.move_to(Holder::TokenAdmin)
        {
            return Err(failed(
                api,
                ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the admin's token holds {MAX_TOKEN_ADMIN_CONNECTIONS} connections \
                         already; reuse one, or try again when one closes"
                    ),
                ),
            ));
        }
        if let Some(Proven(proven)) = parts.extensions.get::<Proven>() {
            proven.store(true, Ordering::Relaxed);
        }
        debug!(peer = %peer.addr, token = %holder.id, "HTTP request of the admin's token");
        Ok(Caller {
            uid: None,
            token: Some(holder.id),
        })
    }
}

/// The token of `Authorization: Bearer TOKEN` (the scheme in any case, RFC 7235), or
/// None for another scheme or no token.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = value[7..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// A 401 with its challenge.
fn unauthorized(api: &Api, challenge: &'static str, message: String) -> Response {
    let mut response = failed(api, ApiError(StatusCode::UNAUTHORIZED, message));
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// On a connection that proves no one, keeps it alive after a request only if the
/// request proved the admin with a token: anyone else gets one answer per connection,
/// as every other non-admin does.
async fn close_unless_proven(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let proven = Proven::default();
    request.extensions_mut().insert(proven.clone());
    let mut response = next.run(request).await;
    if !proven.0.load(Ordering::Relaxed) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// `GET /health/ready`.
async fn ready(_: Caller, State(api): State<Api>) -> Response {
    let vault = api.vault.clone();
    let health = match tokio::task::spawn_blocking(move || vault.health()).await {
        Ok(h) => h,
        Err(_) => {
            return ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "the readiness check failed inside the server; see its log".into(),
            )
            .into_response();
        }
    };
    let body = json!({
        "ready": health.ready(),
        "store": health.store.as_deref().unwrap_or("ok"),
        "key": health.key.as_deref().unwrap_or("ok"),
        "revision": health.revision,
    });
    let status = if health.ready() {
        StatusCode::OK
    } else {
        api.counters.errors.fetch_add(1, Ordering::Relaxed);
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus's text format. Counts and states only.
async fn metrics(_: Caller, State(api): State<Api>) -> Response {
    let p = (api.nine_p)();
    let status = api.vault.status();
    let (done, total, running) = match status.rotation {
        Some(r) => (r.done, r.total, 1),
        None => (0, 0, 0),
    };
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP srv_secrets_{name} {help}");
        let _ = writeln!(out, "# TYPE srv_secrets_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "srv_secrets_{name}{labels} {value}");
        }
    };
    metric(
        "requests_total",
        "counter",
        "9P requests read.",
        &[("", p.requests)],
    );
    metric(
        "errors_total",
        "counter",
        "9P replies that were errors.",
        &[("", p.errors)],
    );
    metric("open_fids", "gauge", "9P fids open.", &[("", p.open_fids)]);
    metric(
        "waiting_reads",
        "gauge",
        "9P reads waiting for a change (events files), holding no reply permit.",
        &[("", p.waiting_reads)],
    );
    metric(
        "connections",
        "gauge",
        "9P connections open, by class.",
        &[
            ("{class=\"principal\"}", p.principal_connections),
            ("{class=\"stranger\"}", p.stranger_connections),
        ],
    );
    metric(
        "refused_connections_total",
        "counter",
        "9P connections closed on accept.",
        &[("", p.refused_connections)],
    );
    metric(
        "http_requests_total",
        "counter",
        "HTTP requests to this API.",
        &[("", api.counters.requests.load(Ordering::Relaxed))],
    );
    metric(
        "http_errors_total",
        "counter",
        "HTTP requests answered with an error.",
        &[("", api.counters.errors.load(Ordering::Relaxed))],
    );
    metric(
        "http_refused_connections_total",
        "counter",
        "HTTP connections closed on accept.",
        &[("", api.counters.refused.load(Ordering::Relaxed))],
    );
    metric(
        "secrets",
        "gauge",
        "Secrets stored.",
        &[("", status.secrets as u64)],
    );
    metric(
        "services",
        "gauge",
        "Services.",
        &[("", status.services as u64)],
    );
    metric(
        "active_key",
        "gauge",
        "The id of the cluster key in use.",
        &[("", u64::from(status.active_key))],
    );
    metric(
        "rotation_running",
        "gauge",
        "1 while a key rotation runs.",
        &[("", running)],
    );
    metric(
        "rotation_secrets",
        "gauge",
        "A running rotation's progress: secrets re-encrypted, and to re-encrypt.",
        &[("{of=\"done\"}", done), ("{of=\"total\"}", total)],
    );
    metric(
        "revision",
        "gauge",
        "The store's revision.",
        &[("", api.vault.revision().0)],
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// A query string's parameters, checked against those an endpoint takes: a parameter it
/// does not take (a typo such as `teir`) or one given twice is a 400, not ignored.
struct Params(Vec<(String, String)>);

impl Params {
    fn new(
        query: Result<Query<Vec<(String, String)>>, QueryRejection>,
        takes: &[&str],
    ) -> Result<Params, ApiError> {
        let Query(pairs) = query.map_err(|e| bad_request(format!("bad query string: {e}")))?;
        for (i, (key, _)) in pairs.iter().enumerate() {
            if !takes.contains(&key.as_str()) {
                return Err(bad_request(format!(
                    "this endpoint takes no parameter {key:?}; it takes {}",
                    takes.join(", ")
                )));
            }
            if pairs[..i].iter().any(|(k, _)| k == key) {
                return Err(bad_request(format!("parameter {key:?} is given twice")));
            }
        }
        Ok(Params(pairs))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn bad_request(message: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message)
}

/// Pretty JSON as `deploy ... --json` prints it ([`crate::reports::pretty_json`]).
fn json_document(body: &[u8]) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body.to_vec()).into_response()
}

/// Counts an error answer and makes it a response.
fn failed(api: &Api, e: ApiError) -> Response {
    api.counters.errors.fetch_add(1, Ordering::Relaxed);
    e.into_response()
}

/// `GET /deployment/secrets?service=S&tier=T` (or `scenario=S`): the plan. 200 whenever
/// the service exists, problems or not (the plan's `ok` says which); 404 for a service the
/// server does not have.
async fn deployment_secrets(
    _: Caller,
    State(api): State<Api>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let params = match Params::new(query, &["service", "scenario", "tier"]) {
        Ok(p) => p,
        Err(e) => return failed(&api, e),
    };
    let service = match (params.get("service"), params.get("scenario")) {
        (Some(s), None) | (None, Some(s)) => s,
        (Some(a), Some(b)) if a == b => a,
        (Some(_), Some(_)) => {
            return failed(
                &api,
                bad_request("service and scenario are one parameter; give one of them".into()),
            );
        }
        (None, None) => {
            return failed(
                &api,
                bad_request("which service? add service=S (or scenario=S) and tier=T".into()),
            );
        }
    };
    let Some(tier) = params.get("tier") else {
        return failed(&api, bad_request("which tier? add tier=T".into()));
    };
    if !model::is_valid_service(service) {
        return failed(
            &api,
            bad_request("a service name is [A-Za-z0-9._-]{1,128}, not . or .. or reserved".into()),
        );
    }
    if !model::is_valid_tier(tier) {
        return failed(&api, bad_request("a tier name is [a-z0-9_-]{1,32}".into()));
    }
    let (vault, service_name, tier_name) = (api.vault.clone(), service.to_owned(), tier.to_owned());
    let planned = match off_the_worker(&api, move || {
        vault
            .plan(&service_name, &tier_name)
            .map(|plan| pretty_json(&plan))
    })
    .await
    {
        Ok(planned) => planned,
        Err(response) => return response,
    };
    match planned {
        Ok(body) => json_document(&body),
        Err(secrets::Error::NoSuchService) => failed(
            &api,
            ApiError(
                StatusCode::NOT_FOUND,
                format!("no such service {service:?}; deploy service list shows them"),
            ),
        ),
        Err(e) => failed(
            &api,
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("no plan: {e}")),
        ),
    }
}

/// `GET /lint[?tier=T]`: the lint, 200 with findings or not (its `ok` says which).
async fn lint(
    _: Caller,
    State(api): State<Api>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let params = match Params::new(query, &["tier"]) {
        Ok(p) => p,
        Err(e) => return failed(&api, e),
    };
    let tier = params.get("tier");
    if tier.is_some_and(|t| !model::is_valid_tier(t)) {
        return failed(&api, bad_request("a tier name is [a-z0-9_-]{1,32}".into()));
    }
    let (vault, tier) = (api.vault.clone(), tier.map(str::to_owned));
    match off_the_worker(&api, move || pretty_json(&vault.lint(tier.as_deref()))).await {
        Ok(body) => json_document(&body),
        Err(response) => response,
    }
}

/// `GET /catalog[?format=json|toml]`: the catalog's export, no values.
async fn catalog(
    _: Caller,
    State(api): State<Api>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let params = match Params::new(query, &["format"]) {
        Ok(p) => p,
        Err(e) => return failed(&api, e),
    };
    let (format, content_type) = match params.get("format") {
        None | Some("json") => (catalog::Format::Json, "application/json"),
        Some("toml") => (catalog::Format::Toml, "application/toml"),
        Some(other) => {
            return failed(
                &api,
                bad_request(format!("format is json or toml, not {other:?}")),
            );
        }
    };
    let vault = api.vault.clone();
    match off_the_worker(&api, move || vault.catalog().export(format)).await {
        Ok(text) => ([(header::CONTENT_TYPE, content_type)], text).into_response(),
        Err(response) => response,
    }
}

/// Makes a report on tokio's blocking pool: a plan, the lint or an export of a large
/// catalog takes long enough to hold up every other connection served by this worker,
/// 9P ones included.
async fn off_the_worker<T: Send + 'static>(
    api: &Api,
    make: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(make).await.map_err(|e| {
        tracing::error!(error = %e, "making a report failed");
        failed(
            api,
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the report failed inside the server; see its log".into(),
            ),
        )
    })
}

/// The body of `POST /deployment/bundle`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleRequest {
    service: String,
    tier: String,
    deployment: String,
    #[serde(default)]
    replace: bool,
}

/// The largest body of `POST /deployment/bundle`: a request is three names and a flag.
const MAX_BUNDLE_REQUEST: usize = 16 << 10;

/// How long the body of `POST /deployment/bundle` may take to arrive, once the headers
/// have: a local client sends its few hundred bytes at once, and one that dribbles them
/// must not hold its connection and task for as long as it likes.
const BUNDLE_REQUEST_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// `POST /deployment/bundle`: issues a bundle, answered with its `json` form, exactly the
/// body of ctl's `bundle create` (its values are generated for it; no stored value is in
/// it). 400 for a body or name that is wrong, 404 for a service or tier that does not
/// exist, 408 for a body that does not arrive in time, 409 for a deployment that has a
/// bundle already (without `"replace": true`) or a plan with problems (listed in
/// `problems`), 413 for a body over [`MAX_BUNDLE_REQUEST`].
async fn deployment_bundle(caller: Caller, State(api): State<Api>, body: Body) -> Response {
    let read = axum::body::to_bytes(body, MAX_BUNDLE_REQUEST);
    let body: Bytes = match tokio::time::timeout(BUNDLE_REQUEST_TIME, read).await {
        Ok(Ok(body)) => body,
        // Over the limit, or cut off: either way not a request to answer.
        Ok(Err(_)) => {
            return failed(
                &api,
                ApiError(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the body is over {} KiB, or did not arrive whole; a bundle request \
                         is {{\"service\": S, \"tier\": T, \"deployment\": ID}}",
                        MAX_BUNDLE_REQUEST >> 10
                    ),
                ),
            );
        }
        Err(_) => {
            let mut response = failed(
                &api,
                ApiError(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the body did not arrive within {} seconds; send it whole",
                        BUNDLE_REQUEST_TIME.as_secs()
                    ),
                ),
            );
            // The rest of the body is not waited for: the connection ends here.
            response.headers_mut().insert(
                header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            return response;
        }
    };
    let request: BundleRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return failed(
                &api,
                bad_request(format!(
                    "the body is not a bundle request ({e}); send {{\"service\": S, \"tier\": \
                     T, \"deployment\": ID}}, and \"replace\": true to issue a new one"
                )),
            );
        }
    };
    if !model::is_valid_service(&request.service) {
        return failed(
            &api,
            bad_request("a service name is [A-Za-z0-9._-]{1,128}, not . or .. or reserved".into()),
        );
    }
    if !model::is_valid_tier(&request.tier) {
        return failed(&api, bad_request("a tier name is [a-z0-9_-]{1,32}".into()));
    }
    if !catalog::is_valid_deployment(&request.deployment) {
        return failed(
            &api,
            bad_request("a deployment id is [A-Za-z0-9._-]{1,128}, not . or ..".into()),
        );
    }
    let vault = api.vault.clone();
    let actor = caller.actor();
    let by = actor.to_string();
    let issued = tokio::task::spawn_blocking(move || {
        vault
            .apply(
                &actor,
                &[Change::Bundle {
                    service: &request.service,
                    tier: &request.tier,
                    deployment: &request.deployment,
                    replace: request.replace,
                }],
            )
            .map(|mut applied| applied.pop())
            .map_err(|e| e.error)
    })
    .await;
    match issued {
        Ok(Ok(Some(Applied::BundleIssued { bundle, replaced }))) => {
            info!(by = %by, service = %bundle.service, tier = %bundle.tier,
                deployment = %bundle.deployment, bundle = bundle.bundle, replaced = ?replaced,
                values = bundle.values.len(), "bundle issued over HTTP");
            // Served from the zeroizing buffer itself, wiped when the response is sent.
            (
                [(header::CONTENT_TYPE, "application/json")],
                Body::from(Bytes::from_owner(bundle.to_json())),
            )
                .into_response()
        }
        Ok(Ok(_)) | Err(_) => failed(
            &api,
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the bundle failed inside the server; see its log".into(),
            ),
        ),
        Ok(Err(e)) => {
            api.counters.errors.fetch_add(1, Ordering::Relaxed);
            bundle_refused(&e)
        }
    }
}

/// A refused bundle as the API answers it.
fn bundle_refused(e: &secrets::Error) -> Response {
    use catalog::BundleError;
    use secrets::Error;
    let status = match e {
        Error::NoSuchService | Error::Bundle(BundleError::UnknownTier { .. }) => {
            StatusCode::NOT_FOUND
        }
        Error::Bundle(BundleError::CoreTier { .. } | BundleError::DeploymentName) => {
            StatusCode::BAD_REQUEST
        }
        Error::DeploymentUsed { .. } | Error::Bundle(_) | Error::BundleHoldsStoredValue { .. } => {
            StatusCode::CONFLICT
        }
        // Deploys are frozen (break-glass): no bundle until `deploy unfreeze`.
        Error::Frozen => StatusCode::LOCKED,
        other => {
            tracing::error!(error = %other, "a bundle request failed in the store");
            return ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the store failed; see the server log".into(),
            )
            .into_response();
        }
    };
    let message = match e {
        Error::NoSuchService => "no such service; deploy service list shows them".to_string(),
        Error::DeploymentUsed {
            service,
            tier,
            deployment,
            bundle,
        } => format!(
            "deployment `{deployment}` already has bundle {bundle} of service `{service}` on \
             tier `{tier}`; send \"replace\": true to issue it a new one (its earlier values \
             stay on record)"
        ),
        other => other.to_string(),
    };
    let mut body = json!({ "error": message });
    if let Error::Bundle(BundleError::Incomplete { problems, .. }) = e {
        body["problems"] = json!(problems);
    }
    (status, Json(body)).into_response()
}

async fn not_found(_: Caller, State(api): State<Api>) -> ApiError {
    api.counters.errors.fetch_add(1, Ordering::Relaxed);
    ApiError(
        StatusCode::NOT_FOUND,
        "no such endpoint; see docs/api.md".into(),
    )
}

async fn method_not_allowed(_: Caller, State(api): State<Api>, uri: axum::http::Uri) -> ApiError {
    api.counters.errors.fetch_add(1, Ordering::Relaxed);
    let only = if uri.path() == "/deployment/bundle" {
        "POST"
    } else {
        "GET"
    };
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("this endpoint takes {only} only"),
    )
}

/// Connections of the admin (root, or the uid that ran `init`) served at once; more are
/// closed on accept.
pub const MAX_ADMIN_CONNECTIONS: usize = 64;

/// Connections proven by the admin's tokens (on TLS without a client certificate) served
/// at once, apart from those the connection proves: as a 9P connection that attached with
/// a token is its token's principal's, in a pool of its own.
pub const MAX_TOKEN_ADMIN_CONNECTIONS: usize = 64;

/// Connections of every other uid served at once, over all of them: each only ever hears
/// 403, so a few are plenty, and they never take the admin's slots.
pub const MAX_OTHER_CONNECTIONS: usize = 16;

/// Connections one such uid may hold at once, so that one local user does not take the
/// others' slots.
pub const MAX_OTHER_CONNECTIONS_PER_UID: usize = 4;

/// How long the admin's connection may take to send a request's head, or wait between
/// requests, before it is closed.
pub const ADMIN_HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The same for every other uid's, which is closed after its one answer anyway.
pub const OTHER_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The most a request's head (its line and headers) may hold, in bytes: what hyper
/// buffers of a connection (its default is 400 KiB each).
pub const MAX_HEAD_LEN: usize = 64 * 1024;

/// TLS handshakes one listener runs at once; when all are taken, the oldest is abandoned
/// for a new one (see [`ninep::server::Handshakes`]).
pub const MAX_HANDSHAKES: usize = 16;

/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most connections one listener serves at once: the descriptors it may take.
pub const MAX_CONNECTIONS: usize =
    MAX_ADMIN_CONNECTIONS + MAX_TOKEN_ADMIN_CONNECTIONS + MAX_OTHER_CONNECTIONS + MAX_HANDSHAKES;

/// Who holds a connection, for its cap.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Holder {
    Admin,
    /// A connection that proved no one, since a request on it proved the admin with a
    /// token.
    TokenAdmin,
    /// Anyone else: a service, or no one; by uid or certificate name, if there is one
    /// (every connection that proved no one counts only among all of them).
    Other(Option<String>),
}

impl Holder {
    fn of(api: &Api, peer: &Peer) -> Holder {
        if let Ok(Principal::Admin) = principal_of(&api.vault, peer) {
            return Holder::Admin;
        }
        Holder::Other(match (peer.uid, &peer.certificate) {
            (Some(uid), _) => Some(format!("uid {uid}")),
            (None, Some(name)) => Some(format!("certificate {name}")),
            (None, None) => None,
        })
    }
}

/// The connections a listener serves now, by holder.
#[derive(Default)]
struct Gate {
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    admin: usize,
    token_admin: usize,
    others: usize,
    by_key: HashMap<String, usize>,
}

/// A connection's place at the [`Gate`], given back when it is dropped.
struct Slot {
    gate: Arc<Gate>,
    holder: Holder,
}

impl Gate {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        // Counts are whole after each update.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for `holder`, if its caps leave one.
    fn enter(self: &Arc<Gate>, holder: Holder) -> Option<Slot> {
        let mut held = self.held();
        match &holder {
            Holder::Admin if held.admin < MAX_ADMIN_CONNECTIONS => held.admin += 1,
            Holder::TokenAdmin if held.token_admin < MAX_TOKEN_ADMIN_CONNECTIONS => {
                held.token_admin += 1;
            }
            Holder::Other(key)
                if held.others < MAX_OTHER_CONNECTIONS
                    && key.as_ref().is_none_or(|key| {
                        held.by_key.get(key).copied().unwrap_or(0) < MAX_OTHER_CONNECTIONS_PER_UID
                    }) =>
            {
                held.others += 1;
                if let Some(key) = key {
                    *held.by_key.entry(key.clone()).or_default() += 1;
                }
            }
            _ => return None,
        }
        Some(Slot {
            gate: Arc::clone(self),
            holder,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.gate.held();
        match &self.holder {
            Holder::Admin => held.admin = held.admin.saturating_sub(1),
            Holder::TokenAdmin => held.token_admin = held.token_admin.saturating_sub(1),
            Holder::Other(key) => {
                held.others = held.others.saturating_sub(1);
                if let Some(key) = key
                    && let Some(n) = held.by_key.get_mut(key)
                {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        held.by_key.remove(key);
                    }
                }
            }
        }
    }
}

/// A connection's slot, shared with its requests, so that a request that proves the
/// admin with a token can move its connection to the token admin's slots.
struct ConnectionSlot(Mutex<Slot>);

impl ConnectionSlot {
    /// Moves the connection to `holder`'s slots, giving back the one it held; false (and
    /// nothing changed) if `holder` has none left.
    fn move_to(&self, holder: Holder) -> bool {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.holder == holder {
            return true;
        }
        match slot.gate.enter(holder) {
            Some(new) => {
                *slot = new;
                true
            }
            None => false,
        }
    }
}

/// Serves the API on `listener` (a unix socket, or TLS) until `shutdown`, then lets the
/// requests in flight finish.
///
/// Each connection is admitted by who its peer is before a request is read from it (see
/// the module's documentation): a unix one at once, a TLS one after its handshake, which
/// runs in a task of its own. hyper serves it with a timer, so that a connection that
/// sends nothing, or its head a byte at a time, gives up its slot.
///
/// # Errors
/// None yet: a failed accept (out of descriptors, say) is logged and retried.
pub async fn serve(api: Api, listener: Bound, mut shutdown: Shutdown) -> std::io::Result<()> {
    info!(listener = %listener, "serving the HTTP API");
    let router = api.clone().router();
    let gate = Arc::new(Gate::default());
    let handshakes = Handshakes::new(MAX_HANDSHAKES);
    // Tells the connections to finish the request in flight and close.
    let (closing, closed) = tokio::sync::watch::channel(());
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.wait() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                // Out of descriptors, most likely: wait for some to be given back rather
                // than spin.
                warn!(error = %e, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match stream {
            crate::serve::Accepted::Unix(stream) => {
                // No credentials: never anyone. Dropping the stream closes it.
                let Some(peer) = unix_peer(&stream) else {
                    continue;
                };
                let Some(slot) = admit(&api, &gate, &peer) else {
                    continue;
                };
                connections.spawn(serve_connection(
                    router.clone(),
                    stream,
                    peer,
                    slot,
                    closed.clone(),
                ));
            }
            // Never bound for HTTP (main refuses --http tcp:).
            crate::serve::Accepted::Tcp(..) => continue,
            crate::serve::Accepted::Tls(tcp, addr, tls) => {
                let Some(handshake) = handshakes.begin() else {
                    continue;
                };
                let (api, gate, router) = (api.clone(), gate.clone(), router.clone());
                let mut closed = closed.clone();
                connections.spawn(async move {
                    let done = tokio::select! {
                        done = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.handshake(tcp, addr)) => done,
                        () = handshake.abandoned() => return,
                        _ = closed.changed() => return,
                    };
                    drop(handshake);
                    let Ok(Ok((stream, peer))) = done else {
                        return;
                    };
                    if let Some(slot) = admit(&api, &gate, &peer) {
                        serve_connection(router, stream, peer, slot, closed).await;
                    }
                });
            }
        }
    }
    drop(listener);
    let _ = closing.send(());
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// A slot at `gate` for `peer`'s connection, or None (counted) if its holder has none left.
fn admit(api: &Api, gate: &Arc<Gate>, peer: &Peer) -> Option<Slot> {
    let holder = Holder::of(api, peer);
    let slot = gate.enter(holder.clone());
    if slot.is_none() {
        debug!(
            ?holder,
            peer = %peer.addr,
            "HTTP connection closed on accept: its holder has no slot left"
        );
        api.counters.refused.fetch_add(1, Ordering::Relaxed);
    }
    slot
}

/// Serves one admitted connection with hyper until it ends, or until `closed` says to
/// finish the request in flight and close.
async fn serve_connection<S>(
    router: Router,
    stream: S,
    peer: Peer,
    slot: Slot,
    mut closed: tokio::sync::watch::Receiver<()>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let admin = slot.holder == Holder::Admin;
    // A connection that proves no one is kept alive only while its requests prove the
    // admin with a token (see close_unless_proven).
    let unproven = needs_token(&peer);
    let slot = Arc::new(ConnectionSlot(Mutex::new(slot)));
    let mut router = router
        .layer(Extension(ConnectInfo(peer)))
        .layer(Extension(slot.clone()));
    if unproven {
        router = router.layer(axum::middleware::from_fn(close_unless_proven));
    }
    let service = router;
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(if admin {
            ADMIN_HEAD_TIMEOUT
        } else {
            OTHER_HEAD_TIMEOUT
        })
        .max_buf_size(MAX_HEAD_LEN)
        .keep_alive(admin || unproven);
    let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    let mut conn = std::pin::pin!(conn);
    let served = tokio::select! {
        served = conn.as_mut() => served,
        _ = closed.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = served {
        debug!(error = %e, "HTTP connection ended");
    }
    drop(slot);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use ninep::server::Transport;

    use super::*;

    #[test]
    fn a_bundle_refused_by_a_freeze_is_423_in_the_words_deploy_knows() {
        let response = bundle_refused(&secrets::Error::Frozen);
        assert_eq!(response.status(), StatusCode::LOCKED);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let body = rt
            .block_on(axum::body::to_bytes(response.into_body(), 4096))
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, json!({ "error": "frozen (see deploy status)" }));
    }

    /// A token made for `service` (None: the admin): its text and ID.
    fn token(vault: &Vault, service: Option<&str>) -> (String, String) {
        let applied = vault
            .apply(
                &Actor::admin(Some(0)),
                &[Change::TokenCreate {
                    service,
                    expires_in: None,
                }],
            )
            .unwrap();
        match applied.into_iter().next() {
            Some(Applied::TokenCreated { token, .. }) => {
                (token.expose().to_string(), token.id().to_string())
            }
            _ => panic!("no token made"),
        }
    }

    /// What the extractor makes of a request with `authorization` headers from `peer`:
    /// the caller's token ID, or the refusal's status, challenge and body.
    fn caller(
        api: &Api,
        peer: &Peer,
        authorization: &[&str],
    ) -> Result<Option<String>, (StatusCode, Option<String>, String)> {
        let mut request = axum::http::Request::builder().uri("/metrics");
        for value in authorization {
            request = request.header(header::AUTHORIZATION, *value);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        parts.extensions.insert(ConnectInfo(peer.clone()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        match rt.block_on(Caller::from_request_parts(&mut parts, api)) {
            Ok(caller) => Ok(caller.token),
            Err(response) => {
                let status = response.status();
                let challenge = response
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .map(|v| v.to_str().unwrap().to_string());
                let body = rt
                    .block_on(axum::body::to_bytes(response.into_body(), 4096))
                    .unwrap();
                Err((status, challenge, String::from_utf8(body.to_vec()).unwrap()))
            }
        }
    }

    #[test]
    fn on_tls_without_a_certificate_an_admin_bearer_token_is_the_admin_and_nothing_else_is() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Vault::init(&data, None, 1000).unwrap();
        let vault = Arc::new(Vault::open(&data, None).unwrap());
        vault.service_set_uid("web", 1001).unwrap();
        let (admin, admin_id) = token(&vault, None);
        let (web, web_id) = token(&vault, Some("web"));
        let api = Api::new(vault.clone(), Arc::new(ServerStats::default));
        let bare = Peer {
            transport: Transport::Tls,
            addr: "tls:test".into(),
            ..Peer::default()
        };
        let bearer = |t: &str| format!("Bearer {t}");
        assert_eq!(
            caller(&api, &bare, &[&bearer(&admin)]).unwrap(),
            Some(admin_id.clone())
        );
        // The scheme in any case.
        assert!(caller(&api, &bare, &[&format!("bEaReR  {admin}")]).is_ok());
        let challenge = Some(CHALLENGE.to_string());
        let refused = |headers: &[&str]| caller(&api, &bare, headers).unwrap_err();
        let (status, got, body) = refused(&[]);
        assert_eq!((status, got), (StatusCode::UNAUTHORIZED, challenge.clone()));
        assert!(body.contains("send Authorization: Bearer TOKEN"), "{body}");
        let (status, got, body) = refused(&["Basic YWRtaW46aHVudGVyMg=="]);
        assert_eq!((status, got), (StatusCode::UNAUTHORIZED, challenge));
        assert!(
            body.contains("no other scheme") && !body.contains("YWRt"),
            "{body}"
        );
        // A token that is not one, or is another's with one byte changed: the same answer,
        // which never holds what was sent.
        let mut wrong = admin.clone().into_bytes();
        let last = wrong.len() - 1;
        wrong[last] = if wrong[last] == b'A' { b'B' } else { b'A' };
        let wrong = String::from_utf8(wrong).unwrap();
        for sent in [wrong.as_str(), "srvtok_nonsense", "hunter2"] {
            let (status, got, body) = refused(&[&bearer(sent)]);
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(got.as_deref(), Some(CHALLENGE_INVALID));
            assert!(
                body.starts_with("{\"error\":\"unauthorized: not a valid token;"),
                "{body}"
            );
            assert!(!body.contains(sent), "{body}");
        }
        // A service's token is someone, but not the admin.
        let (status, got, body) = refused(&[&bearer(&web)]);
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(got.as_deref(), Some(CHALLENGE_SCOPE));
        assert!(
            body.contains(&format!("token {web_id} is service web's")) && !body.contains(&web),
            "{body}"
        );
        // Two identities in one request.
        let (status, _, body) = refused(&[&bearer(&admin), &bearer(&admin)]);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        // Revoked, the token fails at the next request.
        vault
            .apply(
                &Actor::admin(Some(0)),
                &[Change::TokenRevoke { id: &admin_id }],
            )
            .unwrap();
        let (status, got, body) = refused(&[&bearer(&admin)]);
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(got.as_deref(), Some(CHALLENGE_INVALID));
        assert!(
            body.contains(&format!("token {admin_id} was revoked")),
            "{body}"
        );
        assert!(!body.contains(&admin), "{body}");
    }

    #[test]
    fn a_connection_that_says_who_it_is_takes_no_bearer_token() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Vault::init(&data, None, 1000).unwrap();
        let vault = Arc::new(Vault::open(&data, None).unwrap());
        let (admin, _) = token(&vault, None);
        let api = Api::new(vault, Arc::new(ServerStats::default));
        let unix = Peer {
            uid: Some(0),
            addr: "http:uid=0".into(),
            ..Peer::default()
        };
        let certified = Peer {
            transport: Transport::Tls,
            certificate: Some("admin".into()),
            addr: "tls:test".into(),
            ..Peer::default()
        };
        for (peer, by) in [(&unix, "your uid"), (&certified, "its client certificate")] {
            assert_eq!(caller(&api, peer, &[]).unwrap(), None);
            let (status, got, body) =
                caller(&api, peer, &[&format!("Bearer {admin}")]).unwrap_err();
            assert_eq!((status, got), (StatusCode::BAD_REQUEST, None));
            assert!(
                body.contains(&format!("already says who you are ({by})")),
                "{body}"
            );
            assert!(!body.contains(&admin), "{body}");
        }
    }

    #[test]
    fn reports_are_made_off_the_async_worker() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Vault::init(&data, None, 1000).unwrap();
        let vault = Arc::new(Vault::open(&data, None).unwrap());
        vault.service_set_manifest("web", b"secret a\n").unwrap();
        let api = Api::new(vault, Arc::new(ServerStats::default));
        // On a runtime of one worker, another task runs while a report is being made only
        // if the handler gives the worker back meanwhile.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Deterministic: the report waits for a task of this worker to run, which it
            // can only if the report is not made on the worker (then it would wait out the
            // timeout and say so).
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            tokio::spawn(async move {
                let _ = tx.send(());
            });
            let other_ran = off_the_worker(&api, move || {
                rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok()
            })
            .await
            .unwrap();
            assert!(other_ran, "the report held the worker");
            // And each report's handler answers through it.
            for path in ["lint", "plan", "catalog"] {
                let response = match path {
                    "lint" => {
                        lint(
                            Caller {
                                uid: Some(0),
                                token: None,
                            },
                            State(api.clone()),
                            Ok(Query(Vec::new())),
                        )
                        .await
                    }
                    "plan" => {
                        let query = vec![
                            ("service".to_string(), "web".to_string()),
                            ("tier".to_string(), "local".to_string()),
                        ];
                        deployment_secrets(
                            Caller {
                                uid: Some(0),
                                token: None,
                            },
                            State(api.clone()),
                            Ok(Query(query)),
                        )
                        .await
                    }
                    _ => {
                        catalog(
                            Caller {
                                uid: Some(0),
                                token: None,
                            },
                            State(api.clone()),
                            Ok(Query(Vec::new())),
                        )
                        .await
                    }
                };
                assert_eq!(response.status(), StatusCode::OK, "{path}");
            }
        });
    }
}
