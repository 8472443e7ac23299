//! The `/api/v1` route table. Each endpoint is declared once, with its
//! method, path, roles, summary and types; the same declaration mounts the
//! handler behind the role check and writes the endpoint into the OpenAPI
//! document, so the document cannot drift from what is served.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::MethodRouter;
use axum::Router;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{json, Map, Value};

use crate::{ApiError, AppState};

/// Every role but agent may read the fleet and alerts.
pub const READ: &[&str] = &["admin", "operator", "viewer"];
/// Changing rules, silences and webhooks.
pub const WRITE: &[&str] = &["admin", "operator"];
/// Changes only an admin makes (moving a GPU to another host).
pub const ADMIN: &[&str] = &["admin"];
/// Money.
pub const FINANCE: &[&str] = &["admin", "finance"];
/// Agents push samples (admin too, for tooling).
pub const AGENT: &[&str] = &["agent", "admin"];
/// What only an agent asks for (its host's environments).
pub const AGENT_ONLY: &[&str] = &["agent"];

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// Largest JSON body of a management route, bytes.
pub const MAX_JSON_BODY: usize = 1 << 20;

/// The schema of `T`, registered in the document's components.
pub fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// The schema of a query-string type, inline: its properties become
/// parameters.
pub fn query<T: JsonSchema>(_: &mut SchemaGenerator) -> Schema {
    SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator()
        .into_root_schema_for::<T>()
}

/// `POST /api/v1/ingest`'s body, in outline: the store's
/// [`gpuwatch_store::IngestPayload`] (every field is checked by the
/// server, which answers 4xx naming each problem).
pub fn ingest_payload(_: &mut SchemaGenerator) -> Schema {
    let text =
        json!({"type": "string", "minLength": 1, "maxLength": 64, "pattern": TEXT_ID_PATTERN});
    let rows = json!({"type": "array", "items": {"type": "object"}});
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": false,
        "required": ["version", "host", "gpus", "batch"],
        "properties": {
            "version": {"const": gpuwatch_store::PAYLOAD_VERSION},
            "host": {"type": "object", "required": ["id"], "properties": {"id": text}},
            "gpus": rows,
            "batch": {"type": "object", "additionalProperties": false,
                "required": ["gpu", "host", "env"],
                "properties": {"gpu": rows, "host": rows, "env": rows}}
        }
    })
}

/// `POST /api/v1/ingest`'s answer.
pub fn ingest_result(_: &mut SchemaGenerator) -> Schema {
    let count = json!({"type": "integer", "minimum": 0});
    schemars::json_schema!({
        "type": "object",
        "required": ["rows", "inserted", "duplicates"],
        "properties": {"rows": count, "inserted": count, "duplicates": count}
    })
}

/// One endpoint.
pub struct Endpoint {
    /// `get`, `post`, `put`, `patch` or `delete`.
    pub method: &'static str,
    /// axum path, `{name}` for a parameter.
    pub path: &'static str,
    /// Roles allowed to call it.
    pub roles: &'static [&'static str],
    /// One line for the document.
    pub summary: &'static str,
    /// Query parameters.
    pub query: Option<SchemaFn>,
    /// JSON body.
    pub body: Option<SchemaFn>,
    /// Success body (none for 204).
    pub response: Option<SchemaFn>,
    /// Success status.
    pub ok: u16,
    /// Also answers `text/csv` (with `format=csv`).
    pub csv: bool,
}

impl Endpoint {
    /// A GET answering 200 with `response`.
    pub const fn get(
        path: &'static str,
        roles: &'static [&'static str],
        summary: &'static str,
        response: SchemaFn,
    ) -> Self {
        Endpoint {
            method: "get",
            path,
            roles,
            summary,
            query: None,
            body: None,
            response: Some(response),
            ok: 200,
            csv: false,
        }
    }

    /// Also answers CSV (`format=csv`), so the document lists `text/csv`.
    pub const fn or_csv(mut self) -> Self {
        self.csv = true;
        self
    }

    /// Adds query parameters.
    pub const fn query(mut self, q: SchemaFn) -> Self {
        self.query = Some(q);
        self
    }

    /// Another method with a JSON body.
    pub const fn with_body(mut self, method: &'static str, body: SchemaFn, ok: u16) -> Self {
        self.method = method;
        self.body = Some(body);
        self.ok = ok;
        self
    }

    /// Another method without body, e.g. DELETE answering 204.
    pub const fn method(mut self, method: &'static str, ok: u16) -> Self {
        self.method = method;
        self.ok = ok;
        if ok == 204 || ok == 202 {
            self.response = None;
        }
        self
    }
}

/// Collects endpoints into a router and a document.
pub struct Api {
    state: AppState,
    router: Router<AppState>,
    endpoints: Vec<Endpoint>,
}

impl Api {
    /// An empty table.
    pub fn new(state: AppState) -> Self {
        Api {
            state,
            router: Router::new(),
            endpoints: Vec::new(),
        }
    }

    /// Mounts `handler` for `e` behind the role check of `e.roles`.
    pub fn add(mut self, e: Endpoint, handler: MethodRouter<AppState>) -> Self {
        // Management bodies are small JSON documents; only ingest (which
        // checks its own limits) takes large ones.
        let handler = handler.layer(axum::extract::DefaultBodyLimit::max(MAX_JSON_BODY));
        let guarded = handler.route_layer(middleware::from_fn_with_state(
            (self.state.clone(), e.roles, e.method, e.path),
            authorize,
        ));
        self.router = self.router.route(e.path, guarded);
        self.endpoints.push(e);
        self
    }

    /// Mounts a handler that does its own authentication (ingest binds
    /// agent tokens to hosts), still documented with its roles.
    pub fn add_self_authenticated(mut self, e: Endpoint, handler: MethodRouter<AppState>) -> Self {
        self.router = self.router.route(e.path, handler);
        self.endpoints.push(e);
        self
    }

    /// The router and the OpenAPI document.
    pub fn finish(self) -> (Router<AppState>, Value) {
        let doc = openapi(&self.endpoints);
        (self.router, doc)
    }
}

type Guard = (
    AppState,
    &'static [&'static str],
    &'static str,
    &'static str,
);

async fn authorize(
    State((state, roles, method, path)): State<Guard>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let caller = state.caller(req.headers()).await?;
    if !roles.contains(&caller.role.as_str()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this token's role is {}; {} {path} needs one of: {}",
                caller.role,
                method.to_uppercase(),
                roles.join(", ")
            ),
        ));
    }
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

/// What a path id is, by the collection it names: host ids are text (as
/// agents send them), notifications are UUIDs (their idempotency id), every
/// other collection is keyed by a BIGSERIAL.
fn path_id_schema(path: &str) -> Value {
    if path.starts_with("/api/v1/hosts/") {
        json!({"type": "string", "minLength": 1, "maxLength": 64, "pattern": TEXT_ID_PATTERN})
    } else if path.starts_with("/api/v1/notifications/") {
        json!({"type": "string", "format": "uuid"})
    } else {
        json!({"type": "integer", "format": "int64", "minimum": 1, "maximum": i64::MAX})
    }
}

/// No control characters: what the extractors refuse ([`crate::extract`]).
const TEXT_ID_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f]+$";

/// `YYYY-MM`, as billing parses a month.
const MONTH_PATTERN: &str = "^[0-9]{4}-(0[1-9]|1[0-2])$";

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            json!({"name": name, "in": "path", "required": true, "schema": path_id_schema(path)})
        })
        .collect()
}

/// What the server enforces on a query parameter beyond its type, by the
/// parameter's name: paging bounds from the store's listing, months as
/// billing reads them, and no control characters in any text.
fn constrain(name: &str, schema: &mut Value) {
    let Some(o) = schema.as_object_mut() else {
        return;
    };
    match name {
        "limit" => {
            o.insert("minimum".into(), json!(1));
            o.insert("maximum".into(), json!(crate::list::MAX_LIMIT));
        }
        "offset" => {
            o.insert("minimum".into(), json!(0));
        }
        "month" => {
            o.insert("pattern".into(), json!(MONTH_PATTERN));
        }
        _ => {
            let text = o.get("type").is_some_and(|t| {
                t == "string" || t.as_array().is_some_and(|a| a.contains(&json!("string")))
            });
            if text
                && !o.contains_key("enum")
                && !o.contains_key("format")
                && !o.contains_key("pattern")
            {
                o.insert("pattern".into(), json!(TEXT_ID_PATTERN));
            }
        }
    }
}

fn query_params(schema: &Schema) -> Vec<Value> {
    let v = schema.as_value();
    let required: Vec<&str> = v
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    v.get("properties")
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .map(|(name, s)| {
                    let mut s = s.clone();
                    let description = s
                        .as_object_mut()
                        .and_then(|o| o.remove("description"))
                        .unwrap_or(Value::Null);
                    constrain(name, &mut s);
                    let mut p = json!({"name": name, "in": "query",
                        "required": required.contains(&name.as_str()), "schema": s});
                    if !description.is_null() {
                        p["description"] = description;
                    }
                    p
                })
                .collect()
        })
        .unwrap_or_default()
}

fn error_response() -> Value {
    json!({"description": "an error: what is wrong, in words",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// The OpenAPI 3.1 document of `endpoints`.
pub fn openapi(endpoints: &[Endpoint]) -> Value {
    let mut g = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let mut paths = Map::new();
    for e in endpoints {
        let mut op = Map::new();
        op.insert("summary".into(), json!(e.summary));
        op.insert(
            "description".into(),
            json!(format!("Roles: {}.", e.roles.join(", "))),
        );
        op.insert("x-roles".into(), json!(e.roles));
        op.insert(
            "operationId".into(),
            json!(format!(
                "{}{}",
                e.method,
                e.path.replace(['/', '{', '}', '-'], "_")
            )),
        );
        let mut params = path_params(e.path);
        if let Some(q) = e.query {
            params.extend(query_params(&q(&mut g)));
        }
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        if let Some(b) = e.body {
            op.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"application/json": {"schema": b(&mut g)}}}),
            );
        }
        let mut responses = Map::new();
        let ok = match e.response {
            Some(r) if e.csv => json!({"description": "success",
                "content": {"application/json": {"schema": r(&mut g)},
                            "text/csv": {"schema": {"type": "string"}}}}),
            Some(r) => json!({"description": "success",
                "content": {"application/json": {"schema": r(&mut g)}}}),
            None => json!({"description": "success"}),
        };
        responses.insert(e.ok.to_string(), ok);
        for code in ["400", "401", "403", "404", "409", "422", "503"] {
            responses.insert(code.into(), error_response());
        }
        if e.body.is_some() {
            // Bodies have a size limit and a media type.
            for code in ["413", "415"] {
                responses.insert(code.into(), error_response());
            }
        }
        op.insert("responses".into(), Value::Object(responses));
        op.insert("security".into(), json!([{"bearer": []}]));
        paths
            .entry(e.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .expect("path item")
            .insert(e.method.into(), Value::Object(op));
    }
    let mut schemas: Map<String, Value> = g.take_definitions(true).into_iter().collect();
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["status", "message"], "properties": {
                "status": {"type": "integer"}, "message": {"type": "string"},
                "details": {"type": "array", "items": {"type": "string"}}}}}}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {"title": "gpuwatch API", "version": env!("CARGO_PKG_VERSION"),
            "description": "Management and reporting API of gpuwatch. Send `Authorization: Bearer <token>` (tokens from `gpuwatch token create`)."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        }
    })
}
