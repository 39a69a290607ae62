//! The admin API: JSON over HTTP on a Unix socket that only the server's
//! user can open (0600). The CLI is its client.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use spiffe_core::{EntryId, Selector, SpiffeId, TrustDomain};
use svid_ca::{EntryError, JoinTokenAttestor, RegistrationEntry, SlotKind};

use super::federation::RelationshipError;
use super::service::NodeService;
use crate::admin_api::{
    AgentView, AuthorityView, EntrySpec, EntryView, ErrorView, RelationshipSpec, RelationshipView,
    TokenSpec, TokenView, secs, unix,
};

#[derive(Debug, Clone)]
pub(crate) struct AdminState {
    pub(crate) service: Arc<NodeService>,
    pub(crate) tokens: Arc<JoinTokenAttestor>,
}

/// An admin API failure: a status and one line.
#[derive(Debug)]
pub(crate) struct AdminError(StatusCode, String);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorView { error: self.1 })).into_response()
    }
}

fn bad(msg: impl std::fmt::Display) -> AdminError {
    AdminError(StatusCode::BAD_REQUEST, msg.to_string())
}

fn unavailable(msg: impl std::fmt::Display) -> AdminError {
    AdminError(StatusCode::SERVICE_UNAVAILABLE, msg.to_string())
}

fn entry_error(e: EntryError) -> AdminError {
    match e {
        EntryError::NotFound { .. } => AdminError(StatusCode::NOT_FOUND, e.to_string()),
        EntryError::Duplicate { .. } => AdminError(StatusCode::CONFLICT, e.to_string()),
        EntryError::Store(_) => unavailable(e),
        _ => bad(e),
    }
}

type Result<T> = std::result::Result<T, AdminError>;

pub(crate) fn router(state: AdminState) -> Router {
    Router::new()
        .route("/v1/entries", get(list_entries).post(create_entry))
        .route(
            "/v1/entries/{id}",
            get(show_entry).put(update_entry).delete(delete_entry),
        )
        .route("/v1/tokens", post(create_token))
        .route("/v1/agents", get(list_agents))
        .route("/v1/agent", get(show_agent).delete(evict_agent))
        .route("/v1/bundle", get(show_bundle))
        .route("/v1/ca", get(show_ca))
        .route("/v1/ca/{op}", post(ca_op))
        .route("/v1/policy", get(policy_status))
        .route(
            "/v1/federation",
            get(list_relationships).post(create_relationship),
        )
        .route(
            "/v1/federation/{td}",
            get(show_relationship)
                .put(update_relationship)
                .delete(delete_relationship),
        )
        .route("/v1/federation/{td}/refresh", post(refresh_relationship))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct EntryFilter {
    spiffe_id: Option<String>,
    parent_id: Option<String>,
    selector: Option<String>,
}

async fn list_entries(
    State(s): State<AdminState>,
    Query(f): Query<EntryFilter>,
) -> Result<Json<Vec<EntryView>>> {
    let spiffe_id = f.spiffe_id.map(|v| parse_id("spiffe_id", &v)).transpose()?;
    let parent_id = f.parent_id.map(|v| parse_id("parent_id", &v)).transpose()?;
    let selector = f
        .selector
        .map(|v| {
            v.parse::<Selector>()
                .map_err(|e| bad(format!("selector {v:?}: {e}")))
        })
        .transpose()?;
    let mut out: Vec<EntryView> = s
        .service
        .registry()
        .list()
        .iter()
        .filter(|e| spiffe_id.as_ref().is_none_or(|id| &e.spiffe_id == id))
        .filter(|e| parent_id.as_ref().is_none_or(|id| &e.parent_id == id))
        .filter(|e| {
            selector
                .as_ref()
                .is_none_or(|sel| e.selectors.contains(sel))
        })
        .map(|e| EntryView::from(&**e))
        .collect();
    out.sort_by(|a, b| (&a.spiffe_id, &a.id).cmp(&(&b.spiffe_id, &b.id)));
    Ok(Json(out))
}

fn parse_id(field: &str, v: &str) -> Result<SpiffeId> {
    v.parse().map_err(|e| bad(format!("{field} {v:?}: {e}")))
}

fn parse_entry_id(v: &str) -> Result<EntryId> {
    v.parse().map_err(|e| bad(format!("entry id {v:?}: {e}")))
}

/// Applies `spec` to `entry` (a new one, or a copy of the one updated).
fn apply(s: &AdminState, entry: &mut RegistrationEntry, spec: EntrySpec) -> Result<()> {
    if let Some(v) = spec.spiffe_id {
        entry.spiffe_id = parse_id("spiffe_id", &v)?;
    }
    if spec.node {
        entry.parent_id = s.service.registry().server_id();
    } else if let Some(v) = spec.parent_id {
        entry.parent_id = parse_id("parent_id", &v)?;
    }
    if let Some(v) = spec.selectors {
        entry.selectors = v
            .iter()
            .map(|x| {
                x.parse::<Selector>()
                    .map_err(|e| bad(format!("selector {x:?}: {e}")))
            })
            .collect::<Result<_>>()?;
    }
    if spec.x509_svid_ttl.is_some() {
        entry.x509_svid_ttl = secs(spec.x509_svid_ttl);
    }
    if spec.jwt_svid_ttl.is_some() {
        entry.jwt_svid_ttl = secs(spec.jwt_svid_ttl);
    }
    if let Some(v) = spec.dns_names {
        entry.dns_names = v;
    }
    if let Some(v) = spec.federates_with {
        entry.federates_with = v
            .iter()
            .map(|x| {
                x.parse::<TrustDomain>()
                    .map_err(|e| bad(format!("federates_with {x:?}: {e}")))
            })
            .collect::<Result<_>>()?;
    }
    if let Some(v) = spec.admin {
        entry.admin = v;
    }
    if let Some(v) = spec.hint {
        entry.hint = Some(v).filter(|h| !h.is_empty());
    }
    Ok(())
}

async fn create_entry(
    State(s): State<AdminState>,
    Json(spec): Json<EntrySpec>,
) -> Result<(StatusCode, Json<EntryView>)> {
    let spiffe_id = parse_id(
        "spiffe_id",
        spec.spiffe_id
            .as_deref()
            .ok_or_else(|| bad("spiffe_id is required"))?,
    )?;
    let mut spec = spec;
    if !spec.node && spec.parent_id.is_none() {
        match s.service.default_parent() {
            Some(parent) => spec.parent_id = Some(parent.to_string()),
            None => return Err(bad("parent_id is required (or node, for a node alias)")),
        }
    }
    let mut entry =
        RegistrationEntry::new(spiffe_id.clone(), spiffe_id, Vec::new()).map_err(unavailable)?;
    apply(&s, &mut entry, spec)?;
    let created = s.service.registry().create(entry).map_err(entry_error)?;
    s.service.changed();
    tracing::info!(entry = %created.id, spiffe_id = %created.spiffe_id, "entry created");
    Ok((StatusCode::CREATED, Json(EntryView::from(&*created))))
}

async fn show_entry(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<EntryView>> {
    let id = parse_entry_id(&id)?;
    let e = s
        .service
        .registry()
        .get(&id)
        .ok_or_else(|| AdminError(StatusCode::NOT_FOUND, format!("no entry {id}")))?;
    Ok(Json(EntryView::from(&*e)))
}

async fn update_entry(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    Json(spec): Json<EntrySpec>,
) -> Result<Json<EntryView>> {
    let id = parse_entry_id(&id)?;
    let old = s
        .service
        .registry()
        .get(&id)
        .ok_or_else(|| AdminError(StatusCode::NOT_FOUND, format!("no entry {id}")))?;
    let mut entry = (*old).clone();
    apply(&s, &mut entry, spec)?;
    s.service
        .registry()
        .update(entry.clone())
        .map_err(entry_error)?;
    s.service.changed();
    Ok(Json(EntryView::from(&entry)))
}

async fn delete_entry(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<EntryView>> {
    let id = parse_entry_id(&id)?;
    let e = s.service.registry().delete(&id).map_err(entry_error)?;
    s.service.changed();
    Ok(Json(EntryView::from(&*e)))
}

/// The admin API's authorizer over mTLS: a client whose SPIFFE ID is that
/// of a registration entry marked `admin` (SPIRE's admin entries).
pub(crate) struct AdminEntries(pub(crate) Arc<svid_ca::Registry>);

impl mtls_tower::Authorizer for AdminEntries {
    fn authorize(&self, peer: &spiffe_core::SpiffeId) -> bool {
        self.0
            .list()
            .iter()
            .any(|e| e.admin && e.spiffe_id == *peer)
    }

    fn describe(&self) -> String {
        "a registration entry marked admin".to_owned()
    }
}

async fn create_token(
    State(s): State<AdminState>,
    Json(spec): Json<TokenSpec>,
) -> Result<(StatusCode, Json<TokenView>)> {
    // Checked before the token exists, so a bad ID leaves nothing behind.
    let alias_id = spec
        .spiffe_id
        .as_deref()
        .map(|v| parse_id("spiffe_id", v))
        .transpose()?;
    let token = s
        .tokens
        .create_token(Duration::from_secs(spec.ttl))
        .map_err(bad)?;
    // SPIRE's `token generate -spiffeID`: the node that attests with this
    // token is also known by that ID (a node alias on its token selector).
    let alias = match alias_id {
        None => None,
        Some(id) => {
            let entry = RegistrationEntry::new(
                id,
                s.service.registry().server_id(),
                vec![token.selector().clone()],
            )
            .map_err(bad)?;
            let created = s.service.registry().create(entry).map_err(entry_error)?;
            s.service.changed();
            tracing::info!(entry = %created.id, spiffe_id = %created.spiffe_id, "node alias for a join token created");
            Some(EntryView::from(&*created))
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(TokenView {
            token: token.secret().to_owned(),
            expires_at: unix(token.expires_at),
            alias,
        }),
    ))
}

async fn list_agents(State(s): State<AdminState>) -> Result<Json<Vec<AgentView>>> {
    let nodes = s
        .service
        .nodes()
        .list_attested_nodes()
        .map_err(unavailable)?;
    Ok(Json(nodes.iter().map(AgentView::from).collect()))
}

#[derive(Debug, Deserialize)]
struct AgentQuery {
    id: String,
}

async fn show_agent(
    State(s): State<AdminState>,
    Query(q): Query<AgentQuery>,
) -> Result<Json<AgentView>> {
    let id = parse_id("id", &q.id)?;
    let node = s
        .service
        .nodes()
        .attested_node(&id)
        .map_err(unavailable)?
        .ok_or_else(|| AdminError(StatusCode::NOT_FOUND, format!("no attested node {id}")))?;
    Ok(Json(AgentView::from(&node)))
}

async fn evict_agent(
    State(s): State<AdminState>,
    Query(q): Query<AgentQuery>,
) -> Result<StatusCode> {
    let id = parse_id("id", &q.id)?;
    match s.service.evict(&id) {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("no attested node {id}"),
        )),
        Err(e) => Err(unavailable(e)),
    }
}

#[derive(Debug, Deserialize)]
struct BundleQuery {
    format: Option<String>,
}

async fn show_bundle(
    State(s): State<AdminState>,
    Query(q): Query<BundleQuery>,
) -> Result<Response> {
    let bundle = s.service.ca().bundle();
    match q.format.as_deref().unwrap_or("pem") {
        "spiffe" => Ok(([("content-type", "application/json")], bundle.to_json()).into_response()),
        "pem" => {
            let mut pem = String::new();
            for cert in bundle.x509().authorities() {
                pem.push_str(&crate::pem::certificate(cert));
            }
            Ok(([("content-type", "application/x-pem-file")], pem).into_response())
        }
        other => Err(bad(format!("format {other:?}: expected pem or spiffe"))),
    }
}

async fn show_ca(State(s): State<AdminState>) -> Json<Vec<AuthorityView>> {
    Json(
        s.service
            .ca()
            .authorities()
            .iter()
            .map(AuthorityView::from)
            .collect(),
    )
}

#[derive(Debug, Deserialize)]
struct CaQuery {
    kind: Option<String>,
    id: Option<String>,
}

async fn ca_op(
    State(s): State<AdminState>,
    Path(op): Path<String>,
    Query(q): Query<CaQuery>,
) -> Result<Json<Vec<AuthorityView>>> {
    let kind = match q.kind.as_deref().unwrap_or("x509") {
        "x509" => SlotKind::X509,
        "jwt" => SlotKind::Jwt,
        other => return Err(bad(format!("kind {other:?}: expected x509 or jwt"))),
    };
    let ca = s.service.ca();
    let id = || {
        q.id.clone()
            .ok_or_else(|| bad(format!("{op} needs the key id (--id)")))
    };
    let done = match op.as_str() {
        "prepare" => ca.prepare(kind).map(|_| ()),
        "activate" => ca.activate(kind),
        "taint" => ca.taint(kind, &id()?),
        "revoke" => ca.revoke(kind, &id()?),
        other => {
            return Err(AdminError(
                StatusCode::NOT_FOUND,
                format!("no CA operation {other:?}"),
            ));
        }
    };
    done.map_err(bad)?;
    tracing::info!(op, ?kind, "CA operation");
    Ok(Json(
        ca.authorities().iter().map(AuthorityView::from).collect(),
    ))
}

async fn policy_status(State(s): State<AdminState>) -> Json<crate::server::PolicyStatus> {
    Json(s.service.policies().status())
}

fn relationship_error(e: RelationshipError) -> AdminError {
    let status = match e {
        RelationshipError::NotFound(_) => StatusCode::NOT_FOUND,
        RelationshipError::Duplicate(_) => StatusCode::CONFLICT,
        RelationshipError::Persist(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    AdminError(status, e.to_string())
}

fn parse_td(v: &str) -> Result<TrustDomain> {
    v.parse()
        .map_err(|e| bad(format!("trust domain {v:?}: {e}")))
}

async fn list_relationships(State(s): State<AdminState>) -> Json<Vec<RelationshipView>> {
    Json(s.service.federation().list())
}

async fn create_relationship(
    State(s): State<AdminState>,
    Json(spec): Json<RelationshipSpec>,
) -> Result<Json<RelationshipView>> {
    s.service
        .federation()
        .create(spec)
        .map(Json)
        .map_err(relationship_error)
}

async fn show_relationship(
    State(s): State<AdminState>,
    Path(td): Path<String>,
) -> Result<Json<RelationshipView>> {
    let td = parse_td(&td)?;
    s.service
        .federation()
        .show(&td)
        .map(Json)
        .map_err(relationship_error)
}

async fn update_relationship(
    State(s): State<AdminState>,
    Path(td): Path<String>,
    Json(spec): Json<RelationshipSpec>,
) -> Result<Json<RelationshipView>> {
    let td = parse_td(&td)?;
    s.service
        .federation()
        .update(&td, spec)
        .map(Json)
        .map_err(relationship_error)
}

async fn delete_relationship(
    State(s): State<AdminState>,
    Path(td): Path<String>,
) -> Result<Json<RelationshipView>> {
    let td = parse_td(&td)?;
    s.service
        .federation()
        .delete(&td)
        .map(Json)
        .map_err(relationship_error)
}

async fn refresh_relationship(
    State(s): State<AdminState>,
    Path(td): Path<String>,
) -> Result<Json<RelationshipView>> {
    let td = parse_td(&td)?;
    s.service
        .federation()
        .refresh(&td)
        .await
        .map(Json)
        .map_err(relationship_error)
}
