//! Shared by `tests/dashboards.rs` and `benches/dashboards.rs`: Grafana's
//! handling of the dashboards (loading, variables, macro expansion) and a
//! simulated fleet with history to run the panels against.
// The bench uses only part of this module.
#![allow(dead_code)]

pub mod grafana;
pub mod history;
