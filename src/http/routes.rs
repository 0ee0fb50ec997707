//! The route table: every route once, with its method, auth and schemas. The router and
//! `/openapi.json` are both built from it, so the document cannot drift from the routes.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{MethodRouter, delete, get, post};
use serde_json::{Value, json};

use super::auth::Role;
use super::{ApiError, HttpState, api, openai, ops};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// Any configured token.
    Read,
    /// A token with the admin role.
    Admin,
}

/// How the request body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Json(&'static str),
    Multipart(&'static str),
}

/// One route.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub access: Access,
    pub body: Body,
    /// Content type of a success, and its schema (None for non-JSON responses).
    pub response: (&'static str, Option<&'static str>),
}

const JSON: &str = "application/json";

/// Every route lore serves.
pub const ROUTES: &[RouteSpec] = &[
    RouteSpec {
        method: "get",
        path: "/",
        summary: "The web chat page (HTML, no external resources)",
        access: Access::Public,
        body: Body::None,
        response: ("text/html", None),
    },
    RouteSpec {
        method: "get",
        path: "/healthz",
        summary: "Liveness: the process answers",
        access: Access::Public,
        body: Body::None,
        response: (JSON, Some("Health")),
    },
    RouteSpec {
        method: "get",
        path: "/readyz",
        summary: "Readiness: the store is open and the LLM vendor reachable (or not configured); 503 otherwise or while stopping",
        access: Access::Public,
        body: Body::None,
        response: (JSON, Some("Readiness")),
    },
    RouteSpec {
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics",
        access: Access::Public,
        body: Body::None,
        response: ("text/plain", None),
    },
    RouteSpec {
        method: "get",
        path: "/openapi.json",
        summary: "This document",
        access: Access::Public,
        body: Body::None,
        response: (JSON, None),
    },
    RouteSpec {
        method: "post",
        path: "/v1/ask",
        summary: "Answer a question with citations, remembering the conversation; SSE (events delta, done, error) when stream is true",
        access: Access::Read,
        body: Body::Json("AskRequest"),
        response: (JSON, Some("AskResponse")),
    },
    RouteSpec {
        method: "post",
        path: "/v1/search",
        summary: "Search the tenant's knowledge (no answer)",
        access: Access::Read,
        body: Body::Json("SearchRequest"),
        response: (JSON, Some("SearchResponse")),
    },
    RouteSpec {
        method: "post",
        path: "/v1/ingest",
        summary: "Add files (field file, repeatable) and http(s) URLs (field url) to the tenant",
        access: Access::Admin,
        body: Body::Multipart("IngestForm"),
        response: (JSON, Some("IngestResponse")),
    },
    RouteSpec {
        method: "get",
        path: "/v1/sources",
        summary: "The tenant's sources (and the shared knowledge base's, when included)",
        access: Access::Read,
        body: Body::None,
        response: (JSON, Some("SourcesResponse")),
    },
    RouteSpec {
        method: "delete",
        path: "/v1/sources/{source}",
        summary: "Remove one source of the tenant (URL-encode the name)",
        access: Access::Admin,
        body: Body::None,
        response: (JSON, Some("DeleteResponse")),
    },
    RouteSpec {
        method: "post",
        path: "/v1/chat/completions",
        summary: "OpenAI-compatible chat completions backed by the knowledge base (stream supported)",
        access: Access::Read,
        body: Body::Json("ChatCompletionRequest"),
        response: (JSON, Some("ChatCompletion")),
    },
    RouteSpec {
        method: "get",
        path: "/v1/models",
        summary: "OpenAI-compatible model list (one model, lore)",
        access: Access::Read,
        body: Body::None,
        response: (JSON, Some("ModelList")),
    },
];

/// The handler of a table entry.
fn handler(spec: &RouteSpec, state: &Arc<HttpState>) -> MethodRouter<Arc<HttpState>> {
    let json_limit = state.settings.max_json_kib.saturating_mul(1024);
    // Room for the multipart framing around a file at the size limit.
    let upload_limit = (state.core.max_file_bytes() as usize).saturating_add(1024 * 1024);
    let route = match (spec.method, spec.path) {
        ("get", "/") => get(ops::page),
        ("get", "/healthz") => get(ops::healthz),
        ("get", "/readyz") => get(ops::readyz),
        ("get", "/metrics") => get(ops::metrics),
        ("get", "/openapi.json") => get(openapi_json),
        ("post", "/v1/ask") => post(api::ask),
        ("post", "/v1/search") => post(api::search),
        ("post", "/v1/ingest") => post(api::ingest),
        ("get", "/v1/sources") => get(api::sources),
        ("delete", "/v1/sources/{source}") => delete(api::delete_source),
        ("post", "/v1/chat/completions") => post(openai::chat_completions),
        ("get", "/v1/models") => get(openai::models),
        (method, path) => unreachable!("route {method} {path} has no handler"),
    };
    let route = match spec.body {
        Body::Multipart(_) => route.layer(DefaultBodyLimit::max(upload_limit)),
        _ => route.layer(DefaultBodyLimit::max(json_limit)),
    };
    match spec.access {
        Access::Public => route,
        access => route.route_layer(axum::middleware::from_fn_with_state(
            (state.clone(), access),
            require_token,
        )),
    }
}

/// The router of every table entry (routes sharing a path share one method router).
pub fn build(state: Arc<HttpState>) -> Router {
    let mut by_path: BTreeMap<&str, MethodRouter<Arc<HttpState>>> = BTreeMap::new();
    for spec in ROUTES {
        let route = handler(spec, &state);
        let merged = match by_path.remove(spec.path) {
            Some(existing) => existing.merge(route),
            None => route,
        };
        by_path.insert(spec.path, merged);
    }
    let mut router = Router::new();
    for (path, route) in by_path {
        router = router.route(path, route);
    }
    router.with_state(state)
}

/// Checks the bearer token and the role, and hands the caller to the handler.
async fn require_token(
    State((state, access)): State<(Arc<HttpState>, Access)>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = state
        .tokens
        .check(authorization)
        .ok_or_else(ApiError::unauthorized)?
        .clone();
    if access == Access::Admin && principal.role != Role::Admin {
        return Err(ApiError::forbidden(
            "this needs a token with the admin role",
        ));
    }
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

/// The OpenAPI 3.1 document of [`ROUTES`].
/// `/openapi.json`, generated from the route table.
async fn openapi_json() -> axum::Json<Value> {
    axum::Json(openapi())
}

/// The OpenAPI document of [`ROUTES`].
pub fn openapi() -> Value {
    let mut paths = serde_json::Map::new();
    for spec in ROUTES {
        let mut op = json!({
            "summary": spec.summary,
            "operationId": format!("{}{}", spec.method, spec.path.replace(['/', '{', '}', '.'], "_")),
        });
        let (content_type, schema) = spec.response;
        let ok_content = match schema {
            Some(name) => {
                json!({content_type: {"schema": {"$ref": format!("#/components/schemas/{name}")}}})
            }
            None => json!({content_type: {}}),
        };
        let mut responses = json!({"200": {"description": "success", "content": ok_content}});
        let error = json!({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}});
        if spec.path == "/v1/ask" || spec.path == "/v1/chat/completions" {
            responses["200"]["content"]["text/event-stream"] =
                json!({"schema": {"type": "string", "description": "when stream is true"}});
        }
        if spec.access != Access::Public {
            op["security"] = json!([{"bearer": []}]);
            responses["401"] = json!({"description": "no valid bearer token", "content": error});
            responses["429"] =
                json!({"description": "rate limited (Retry-After)", "content": error});
        }
        if spec.access == Access::Admin {
            responses["403"] =
                json!({"description": "not an admin token, or over the quota", "content": error});
        }
        match spec.body {
            Body::None => {}
            Body::Json(name) => {
                op["requestBody"] = json!({"required": true, "content": {"application/json":
                    {"schema": {"$ref": format!("#/components/schemas/{name}")}}}});
                responses["400"] = json!({"description": "malformed request", "content": error});
            }
            Body::Multipart(name) => {
                op["requestBody"] = json!({"required": true, "content": {"multipart/form-data":
                    {"schema": {"$ref": format!("#/components/schemas/{name}")}}}});
                responses["400"] = json!({"description": "malformed request", "content": error});
            }
        }
        if spec.path.contains('{') {
            op["parameters"] = json!([{"name": "source", "in": "path", "required": true,
                "schema": {"type": "string"}}]);
        }
        op["responses"] = responses;
        let entry = paths
            .entry(spec.path.to_owned())
            .or_insert_with(|| json!({}));
        entry[spec.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "lore", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Team knowledge-base assistant: answers with citations. Every /v1 route needs `Authorization: Bearer <token>`; a token is bound to one tenant and a role (read or admin)."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas(),
        }
    })
}

fn schemas() -> Value {
    let citation = json!({"type": "object", "required": ["n", "source"], "properties": {
        "n": {"type": "integer"}, "source": {"type": "string"},
        "page": {"type": ["integer", "null"]}, "heading": {"type": ["string", "null"]},
        "timestamp": {"type": ["string", "null"]}}});
    json!({
        "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
            "message": {"type": "string"}, "type": {"type": "string"}}}}},
        "Health": {"type": "object", "properties": {"status": {"type": "string"}}},
        "Readiness": {"type": "object", "properties": {
            "ready": {"type": "boolean"}, "store": {"type": "string"}, "llm": {"type": "string"},
            "shutting_down": {"type": "boolean"}}},
        "Citation": citation,
        "AskRequest": {"type": "object", "required": ["question"], "properties": {
            "question": {"type": "string"},
            "conversation_id": {"type": "string", "description": "1-128 of A-Z a-z 0-9 _ . -; continues that conversation; when absent the question is one-shot and nothing is remembered"},
            "tenant": {"type": "string", "description": "must be the token's tenant if given"},
            "stream": {"type": "boolean", "default": false}}},
        "AskResponse": {"type": "object", "properties": {
            "answer": {"type": "string"}, "grounded": {"type": "boolean"},
            "citations": {"type": "array", "items": {"$ref": "#/components/schemas/Citation"}},
            "conversation_id": {"type": "string", "description": "the conversation continued; absent for a one-shot question"}}},
        "SearchRequest": {"type": "object", "required": ["query"], "properties": {
            "query": {"type": "string"}, "tenant": {"type": "string"},
            "top_k": {"type": "integer", "minimum": 1, "maximum": 50}}},
        "SearchResponse": {"type": "object", "properties": {
            "evidence": {"type": "boolean"},
            "hits": {"type": "array", "items": {"type": "object", "properties": {
                "score": {"type": "number"}, "source": {"type": "string"}, "text": {"type": "string"},
                "page": {"type": ["integer", "null"]}, "heading": {"type": ["string", "null"]},
                "timestamp": {"type": ["string", "null"]}}}}}},
        "IngestForm": {"type": "object", "properties": {
            "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
            "url": {"type": "array", "items": {"type": "string"}},
            "tenant": {"type": "string"}}},
        "IngestResponse": {"type": "object", "properties": {"results": {"type": "array", "items": {
            "type": "object", "properties": {"name": {"type": "string"},
            "status": {"type": "string", "enum": ["stored", "unchanged", "failed"]},
            "chunks": {"type": "integer"}, "error": {"type": "string"}}}}}},
        "SourcesResponse": {"type": "object", "properties": {"tenant": {"type": "string"},
            "sources": {"type": "array", "items": {"type": "object", "properties": {
                "source": {"type": "string"}, "chunks": {"type": "integer"}, "shared": {"type": "boolean"}}}}}},
        "DeleteResponse": {"type": "object", "properties": {"source": {"type": "string"},
            "removed_chunks": {"type": "integer"}}},
        "ChatCompletionRequest": {"type": "object", "required": ["messages"], "properties": {
            "model": {"type": "string"}, "stream": {"type": "boolean"},
            "messages": {"type": "array", "items": {"type": "object", "properties": {
                "role": {"type": "string"}, "content": {}}}}}},
        "ChatCompletion": {"type": "object", "properties": {"id": {"type": "string"},
            "object": {"type": "string"}, "model": {"type": "string"},
            "choices": {"type": "array"}, "usage": {"type": "object"},
            "citations": {"type": "array", "items": {"$ref": "#/components/schemas/Citation"}}}},
        "ModelList": {"type": "object", "properties": {"object": {"type": "string"}, "data": {"type": "array"}}},
    })
}
