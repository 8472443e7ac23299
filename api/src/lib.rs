//! gpuwatch api: the REST API (/api/v1: ingest, rules, silences, webhooks, hosts, reports) and its auth.
//!
//! Empty on purpose: this role arrives with its own issue, and until then
//! the crate holds nothing rather than a pretend implementation.
#![forbid(unsafe_code)]
