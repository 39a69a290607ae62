//! The engine: compiled policies for one workload behind an atomic swap.
//!
//! Evaluation order (§0, §2), written down once:
//!
//! 1. PeerAuthentication: STRICT + plaintext → connection reset.
//! 2. HTTP normalisation; malformed requests → 400.
//! 3. RequestAuthentication: a bad token → 401 (403 for audiences).
//! 4. CUSTOM → DENY → ALLOW; AUDIT only sets a flag; dry-run policies only
//!    produce shadow results.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::authn::{Authenticated, Authenticator, TokenHandling};
use crate::compile::{self, Compiled, Group};
use crate::decision::{Decision, Reason, Response, ShadowResult, TokenHeaders};
use crate::jwks_fetch::JwksCache;
use crate::load::PolicySet;
use crate::matcher::Ctx;
use crate::mesh::{MeshConfig, Workload};
use crate::model::{Action, MtlsMode};
use crate::peer_auth::EffectiveMtls;
use crate::request::{Protocol, Request, View};

/// What an external authorizer answers for a CUSTOM policy (E-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExtAuthzVerdict {
    /// Continue evaluation (CUSTOM never bypasses DENY or ALLOW).
    Allow,
    /// Reject with this HTTP status (403 by default).
    Deny {
        /// Status sent to the client.
        status: u16,
    },
}

/// The external authorizer seam. Closures implement it:
///
/// ```
/// use authz::{ExtAuthz, ExtAuthzVerdict, Request};
/// let deny_all = |_provider: &str, _req: &Request| ExtAuthzVerdict::Deny { status: 403 };
/// assert_eq!(deny_all.check("opa", &Request::tcp()), ExtAuthzVerdict::Deny { status: 403 });
/// ```
pub trait ExtAuthz {
    /// Asks `provider` about the request.
    fn check(&self, provider: &str, request: &Request) -> ExtAuthzVerdict;
}

impl<F: Fn(&str, &Request) -> ExtAuthzVerdict> ExtAuthz for F {
    fn check(&self, provider: &str, request: &Request) -> ExtAuthzVerdict {
        self(provider, request)
    }
}

/// Used by [`Engine::check`]: no authorizer is configured, so a matching
/// CUSTOM rule fails closed.
#[derive(Debug)]
struct NoExtAuthz;

impl ExtAuthz for NoExtAuthz {
    fn check(&self, _provider: &str, _request: &Request) -> ExtAuthzVerdict {
        ExtAuthzVerdict::Deny { status: 403 }
    }
}

/// One compiled policy set; a reload replaces it as a whole.
#[derive(Debug)]
pub(crate) struct State {
    http: Compiled,
    tcp: Compiled,
    mtls: EffectiveMtls,
    authn: Authenticator,
    /// Token locations and output headers, for the HTTP layer.
    pub(crate) handling: TokenHandling,
}

impl State {
    /// The request headers the HTTP rules read (lowercase, sorted), or
    /// `None` when every header must be kept (a CUSTOM rule applies).
    pub(crate) fn header_names(&self) -> Option<&[String]> {
        self.http.header_names.as_deref()
    }

    fn build(set: &PolicySet, workload: &Workload, mesh: &MeshConfig) -> Self {
        let (http, tcp) = compile::compile(&set.authorization, workload, mesh);
        let selected = set.request_authentication.iter().filter(|ra| {
            compile::applies(
                &ra.namespace,
                ra.selector.as_ref(),
                !ra.target_refs.is_empty(),
                workload,
                mesh,
            )
        });
        let authn = Authenticator::new(selected);
        State {
            http,
            tcp,
            mtls: EffectiveMtls::resolve(&set.peer_authentication, workload, mesh),
            handling: authn.token_handling(),
            authn,
        }
    }
}

/// Decides requests for one workload. Cheap to share (`Arc<Engine>`);
/// [`Engine::reload`] swaps the whole compiled set atomically and the
/// decision path takes no lock.
#[derive(Debug)]
pub struct Engine {
    workload: Workload,
    mesh: MeshConfig,
    state: ArcSwap<State>,
    jwks: Option<Arc<JwksCache>>,
}

impl Engine {
    /// Compiles `set` for `workload`.
    pub fn new(workload: Workload, mesh: MeshConfig, set: &PolicySet) -> Self {
        let state = State::build(set, &workload, &mesh);
        Engine {
            workload,
            mesh,
            state: ArcSwap::from_pointee(state),
            jwks: None,
        }
    }

    /// Compiles `set` for the workload that `id` identifies: the mesh
    /// trust domain is `id`'s ([`MeshConfig::for_identity`]) and the
    /// namespace is that of an Istio-form ID ([`Workload::from_spiffe_id`]),
    /// `default` for IDs of another form. Use [`Engine::new`] to set
    /// either explicitly (labels, aliases, another root namespace).
    pub fn for_identity(id: &spiffe_core::SpiffeId, set: &PolicySet) -> Self {
        let workload = Workload::from_spiffe_id(id).unwrap_or_else(|| Workload::new("default"));
        Engine::new(workload, MeshConfig::for_identity(id), set)
    }

    /// Reads key sets for `jwksUri` rules from `cache` (kept current by a
    /// [`JwksFetcher`](crate::JwksFetcher)). Without a cache, tokens for
    /// `jwksUri`-only rules fail with 401.
    #[must_use]
    pub fn with_jwks_cache(mut self, cache: Arc<JwksCache>) -> Self {
        self.jwks = Some(cache);
        self
    }

    /// Every URI the RequestAuthentications selecting this workload fetch
    /// keys from: their `jwksUri`s, and the OIDC discovery URI of each
    /// jwtRule that has neither `jwks` nor `jwksUri` (RA-2). Give them to a
    /// [`crate::JwksFetcher`].
    pub fn jwks_uris(&self) -> Vec<String> {
        self.state.load().authn.jwks_uris()
    }

    /// Replaces every policy at once; in-flight checks finish on the old set.
    pub fn reload(&self, set: &PolicySet) {
        let state = State::build(set, &self.workload, &self.mesh);
        self.state.store(Arc::new(state));
    }

    /// The effective mTLS mode for a workload port (PA-4, PA-5).
    pub fn mtls_mode(&self, port: u16) -> MtlsMode {
        self.state.load().mtls.mode(port)
    }

    /// The current compiled set, for a caller (the HTTP layer) that needs
    /// several reads of one set: [`Engine::decide_in`] decides on it.
    pub(crate) fn snapshot(&self) -> Arc<State> {
        self.state.load_full()
    }

    /// Decides with no external authorizer (a matching CUSTOM rule denies)
    /// at the current time.
    pub fn check(&self, request: &Request) -> Decision {
        self.check_with(request, &NoExtAuthz, SystemTime::now())
    }

    /// Decides, asking `ext` for CUSTOM policies; `now` is used for token times.
    pub fn check_with(&self, request: &Request, ext: &dyn ExtAuthz, now: SystemTime) -> Decision {
        self.decide(&request.view(), ext, now, true)
    }

    /// Reference evaluation that scans every compiled rule in order instead
    /// of using the indexes. Same decisions as [`Engine::check`]; meant for
    /// differential tests and benchmarks.
    pub fn check_unindexed(&self, request: &Request) -> Decision {
        self.decide(&request.view(), &NoExtAuthz, SystemTime::now(), false)
    }

    /// Decides on `state`, a snapshot from [`Engine::snapshot`].
    pub(crate) fn decide_in(
        &self,
        state: &State,
        request: &View<'_>,
        ext: &dyn ExtAuthz,
        now: SystemTime,
    ) -> Decision {
        self.decide_on(state, request, ext, now, true)
    }

    fn decide(
        &self,
        request: &View<'_>,
        ext: &dyn ExtAuthz,
        now: SystemTime,
        indexed: bool,
    ) -> Decision {
        self.decide_on(&self.state.load(), request, ext, now, indexed)
    }

    fn decide_on(
        &self,
        state: &State,
        request: &View<'_>,
        ext: &dyn ExtAuthz,
        now: SystemTime,
        indexed: bool,
    ) -> Decision {
        let tcp = request.protocol == Protocol::Tcp;
        let mode = state.mtls.mode(request.port);
        if mode == MtlsMode::Strict && request.peer.is_none() {
            return deny(Response::ConnectionReset, None, Reason::StrictMtlsPlaintext);
        }
        // DISABLE: the sidecar does not terminate mTLS, so there is no peer identity.
        let peer = if mode == MtlsMode::Disable {
            None
        } else {
            request.peer
        };
        if !tcp && let Some(why) = request.malformed {
            return deny(Response::Http(400), None, Reason::BadRequest(why));
        }
        let host = if tcp { None } else { request.effective_host() };
        let authenticated = if tcp || is_cors_preflight(request) {
            Authenticated::default()
        } else {
            match state
                .authn
                .authenticate(request.tokens, now, self.jwks.as_deref())
            {
                Ok(a) => a,
                Err(f) => return deny(Response::Http(f.status()), None, Reason::Jwt(f)),
            }
        };
        let no_headers: &[(String, String)] = &[];
        let cx = Ctx {
            peer,
            source_ip: request.source_ip,
            // remote.ip is the direct peer unless PROXY protocol or a
            // trusted XFF supplied the original client (Envoy's rule).
            remote_ip: request.remote_ip.or(request.source_ip),
            destination_ip: request.destination_ip,
            port: request.port,
            sni: request.sni,
            method: request.method,
            path: request.path,
            host: host.as_deref(),
            headers: if tcp { no_headers } else { request.headers },
            jwt: authenticated.identity.as_ref(),
            space_delimited: &state.authn.space_delimited,
        };
        let compiled = if tcp { &state.tcp } else { &state.http };
        let mut decision = authorize(compiled, &cx, request, ext, tcp, indexed);
        decision.audit = compiled.audit.first_match(&cx, indexed).is_some();
        decision.shadow = shadow(compiled, &cx, indexed);
        if decision.allowed {
            decision.token_headers = authenticated.headers;
        }
        decision
    }
}

fn deny(response: Response, policy: Option<String>, reason: Reason) -> Decision {
    Decision {
        allowed: false,
        response,
        policy,
        reason,
        audit: false,
        shadow: Vec::new(),
        token_headers: TokenHeaders::default(),
    }
}

fn is_cors_preflight(request: &View<'_>) -> bool {
    request.method == "OPTIONS"
        && request.header_value("origin").is_some()
        && request
            .header_value("access-control-request-method")
            .is_some()
}

fn rule_name(group: &Group, i: usize) -> Option<String> {
    group.rules.get(i).map(|r| r.name.clone())
}

fn authorize(
    c: &Compiled,
    cx: &Ctx<'_>,
    request: &View<'_>,
    ext: &dyn ExtAuthz,
    tcp: bool,
    indexed: bool,
) -> Decision {
    let denied = if tcp {
        Response::ConnectionClosed
    } else {
        Response::Http(403)
    };
    let allowed = if tcp {
        Response::Connected
    } else {
        Response::Http(200)
    };
    // E-2: CUSTOM first. Only enforced policies' answers count; a dry-run
    // CUSTOM rule still triggers the call (D-4).
    if let Some(i) = c.custom.first_match(cx, indexed) {
        let provider = c.custom.providers.get(i).cloned().unwrap_or_default();
        if let ExtAuthzVerdict::Deny { status } = ext.check(&provider, &request.request()) {
            let response = if tcp {
                Response::ConnectionClosed
            } else {
                Response::Http(status)
            };
            return deny(
                response,
                rule_name(&c.custom, i),
                Reason::ExtAuthzDenied { provider },
            );
        }
    }
    // E-3: DENY.
    if let Some(i) = c.deny.first_match(cx, indexed) {
        return deny(denied, rule_name(&c.deny, i), Reason::DenyMatched);
    }
    // E-4 / E-5: ALLOW.
    if !c.allow_present {
        return Decision {
            allowed: true,
            response: allowed,
            policy: None,
            reason: Reason::NoAllowPolicy,
            audit: false,
            shadow: Vec::new(),
            token_headers: TokenHeaders::default(),
        };
    }
    match c.allow.first_match(cx, indexed) {
        Some(i) => Decision {
            allowed: true,
            response: allowed,
            policy: rule_name(&c.allow, i),
            reason: Reason::AllowMatched,
            audit: false,
            shadow: Vec::new(),
            token_headers: TokenHeaders::default(),
        },
        None => deny(denied, None, Reason::NoAllowMatched),
    }
}

/// D-2/D-3: ALLOW and DENY shadow results, reported separately.
fn shadow(c: &Compiled, cx: &Ctx<'_>, indexed: bool) -> Vec<ShadowResult> {
    let mut out = Vec::new();
    if c.dry_allow_present {
        let hit = c.dry_allow.first_match(cx, indexed);
        out.push(ShadowResult {
            action: Action::Allow,
            allowed: hit.is_some(),
            policy: hit.and_then(|i| rule_name(&c.dry_allow, i)),
        });
    }
    if !c.dry_deny.is_empty() {
        let hit = c.dry_deny.first_match(cx, indexed);
        out.push(ShadowResult {
            action: Action::Deny,
            allowed: hit.is_none(),
            policy: hit.and_then(|i| rule_name(&c.dry_deny, i)),
        });
    }
    out
}
