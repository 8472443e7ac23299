//! gpuwatch's HTTP service, `gpuwatch serve`.
//!
//! - `GET /health`: the process is up. `GET /ready`: the database answers
//!   and its schema is what this binary expects (seed 003's probes).
//! - `GET /metrics`: Prometheus exposition from the [`gpuwatch_exporter`]
//!   snapshot (dcgm-exporter and node_exporter names).
//! - `/api/v1`: [`ingest`] for agents, then the management and reporting
//!   routes declared in one table ([`endpoints`]) that also writes the
//!   OpenAPI document served at `/api/v1/openapi.json`.
//! - [`auth`]: bearer tokens with roles, stored hashed, made and revoked
//!   by `gpuwatch token`; every route states the roles that may call it.
//! - [`console`]: the web console, embedded, at `/`.
//!
//! Files: `state.rs` ([`AppState`]), `routes.rs` (the route table,
//! [`router`]), `probes.rs` (`/ready`, `/metrics`), `server.rs` ([`serve`]),
//! [`tokens`] (`gpuwatch token`), and one file per group of routes.
//!
//! Every error is a JSON body `{"error": {"status", "message", "details"?}}`,
//! unknown routes and methods included.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod agent;
pub mod alerting;
pub mod auth;
pub mod billing;
mod config;
pub mod console;
pub mod endpoints;
mod error;
pub mod extract;
pub mod ingest;
pub mod inventory;
pub mod jobs;
pub mod list;
mod probes;
mod routes;
mod server;
mod state;
pub mod tls;
pub mod tokens;
pub mod validate;

pub use config::ApiConfig;
pub use error::ApiError;
pub use routes::{api, router};
pub use server::serve;
pub use state::AppState;
