//! The HTTP side: one handler for every path, with the latency, fault, request-log and state-file knobs.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::api_error::ApiError;
use super::compute::{self, Ctx, Reply};
use super::fault::{FaultKind, Request};
use super::gke;
use super::networkmanagement;
use super::world::{now_ms, rfc3339};
use super::{Shared, lock};

/// The longest `operations.wait` blocks, like Google's.
const WAIT_LIMIT: Duration = Duration::from_secs(120);

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    if !shared.options.api_latency.is_zero() {
        tokio::time::sleep(shared.options.api_latency).await;
    }
    let query: BTreeMap<String, String> = Query::<BTreeMap<String, String>>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    // An insert names its resource in the body only: the log says which, so that a reader can tell apart
    // two inserts on one collection.
    let name = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|b| b.get("name").and_then(|n| n.as_str()).map(str::to_string));
    let (status, body) = match answer(&shared, &method, &uri, &query, &body).await {
        Ok(v) => (200, v),
        Err(e) => (e.code, e.body()),
    };
    log(
        &shared, &method, &uri, &query, &headers, name, status, started,
    );
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body.to_string(),
    )
        .into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    resp
}

/// With `--fault-rate`, a share of requests answer with one of `--fault-kinds` that applies to them.
fn fault(shared: &Shared, request: &Request<'_>) -> Option<ApiError> {
    if shared.options.fault_rate <= 0.0 {
        return None;
    }
    let kinds = if shared.options.fault_kinds.is_empty() {
        &FaultKind::DEFAULT[..]
    } else {
        &shared.options.fault_kinds[..]
    };
    let mut rng = lock(&shared.rng);
    if rng.random::<f64>() >= shared.options.fault_rate {
        return None;
    }
    let answers: Vec<ApiError> = kinds.iter().filter_map(|k| k.answer(request)).collect();
    if answers.is_empty() {
        return None;
    }
    let i = rng.random_range(0..answers.len());
    answers.into_iter().nth(i)
}

async fn answer(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    query: &BTreeMap<String, String>,
    raw: &Bytes,
) -> Result<Value, ApiError> {
    let body = if raw.is_empty() {
        None
    } else {
        Some(
            serde_json::from_slice::<Value>(raw)
                .map_err(|e| ApiError::bad_json(format!("Invalid JSON payload received. {e}")))?,
        )
    };
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let method = method.as_str();
    let request = Request {
        method,
        segments: &segments,
        body: body.as_ref(),
    };
    if let Some(e) = fault(shared, &request) {
        return Err(e);
    }
    let (reply, snapshot) = {
        let now = now_ms();
        let ctx = Ctx {
            now,
            timing: shared.timing,
            query,
            policies: &shared.options.org_policies,
        };
        let mut world = lock(&shared.world);
        world.settle(now, shared.timing);
        compute::reconcile(&mut world, now, shared.timing, &shared.options.org_policies);
        let reply = match segments.as_slice() {
            ["compute", "v1", "projects", p, rest @ ..] => {
                compute::handle(&mut world, &ctx, method, p, rest, body)
            }
            // Network Management and GKE share the `/v1/projects/P/locations/L/` shape; GKE has no location
            // `global`.
            ["v1", "projects", p, "locations", "global", rest @ ..] => {
                networkmanagement::handle(&mut world, &ctx, method, p, rest, body)
            }
            ["v1", "projects", p, rest @ ..] => {
                gke::handle(&mut world, &ctx, method, p, rest, body)
            }
            ["_emulator", rest @ ..] => compute::emulator_endpoint(&mut world, &ctx, method, rest),
            _ => Err(ApiError::method_not_found(method, uri.path())),
        }?;
        // A group notices at once a VM deleted through the instances API.
        compute::reconcile(&mut world, now, shared.timing, &shared.options.org_policies);
        let snapshot = if reply.mutated {
            shared.snapshot(&world)
        } else {
            None
        };
        (reply, snapshot)
    };
    if let Err(e) = shared.save(snapshot) {
        return Err(ApiError::new(500, "backendError", e.to_string()));
    }
    match reply {
        Reply {
            wait: Some(op_path),
            ..
        } => wait(shared, &op_path).await,
        Reply { body, .. } => Ok(body),
    }
}

/// `operations.wait`: sleeps (without the lock) until the operation is DONE or the limit passes.
async fn wait(shared: &Shared, op_path: &str) -> Result<Value, ApiError> {
    let done_ms = lock(&shared.world)
        .operations
        .get(op_path)
        .map(|op| op.done_ms)
        .ok_or_else(|| ApiError::not_found(op_path))?;
    let left = u64::try_from(done_ms - now_ms()).unwrap_or(0);
    let pause = Duration::from_millis(left).min(WAIT_LIMIT);
    if !pause.is_zero() {
        tokio::time::sleep(pause).await;
    }
    let now = now_ms();
    let world = lock(&shared.world);
    world
        .operations
        .get(op_path)
        .map(|op| op.render(now))
        .ok_or_else(|| ApiError::not_found(op_path))
}

// Each argument is a field of the log line.
#[allow(clippy::too_many_arguments)]
fn log(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    query: &BTreeMap<String, String>,
    headers: &HeaderMap,
    name: Option<String>,
    status: u16,
    started: Instant,
) {
    let Some(file) = &shared.log else { return };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let (scheme, token) = v.split_once(' ').unwrap_or((v, ""));
            let digest = Sha256::digest(token.trim().as_bytes());
            let hex = crate::hex::encode(&digest);
            json!({"scheme": scheme, "token_sha256": hex})
        });
    let mut line = json!({
        "time": rfc3339(now_ms()),
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query().unwrap_or(""),
        "status": status,
        "duration_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "auth": auth,
    });
    if let (Some(rid), Some(o)) = (query.get("requestId"), line.as_object_mut()) {
        o.insert("request_id".into(), json!(rid));
    }
    if let (Some(name), Some(o)) = (name, line.as_object_mut()) {
        o.insert("name".into(), json!(name));
    }
    let mut text = line.to_string();
    text.push('\n');
    let mut f = lock(file);
    // A log that cannot be written must not break the answer.
    let _ = f.write_all(text.as_bytes()).and_then(|()| f.flush());
}
