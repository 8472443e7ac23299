//! gpuwatch's integration suite: every end-to-end test in one binary, so the
//! workspace links it once. Each module is one area and talks to real
//! servers (PostgreSQL, TimescaleDB, HTTP, SMTP, Prometheus, node_exporter);
//! the shared support (the binary, in-process servers, receivers, free ports,
//! process guards) lives in `common`, `alerting` and `dashboards_support`.
//!
//! Run one area with `scripts/test.sh --test suite -- <module>::`, e.g.
//! `scripts/test.sh --test suite -- alerter::`.

mod alerting;
mod common;
mod dashboards_support;
mod ha_cluster;

mod agent_delivery;
mod agent_metrics;
mod aggregator;
mod alerter;
mod alerter_admin;
mod alerter_outage;
mod alerter_replicas;
mod alertmanager;
mod api;
mod api_billing;
mod billing;
mod billing_cli;
mod cgroup_real;
mod citus;
mod cli;
mod console;
mod dashboards;
mod dlworkspace;
mod dlworkspace_alerts;
mod dlworkspace_billing;
mod exporter;
mod failover;
mod host_vs_node_exporter;
mod hostile;
mod ingest;
mod migrate;
mod outage;
mod quota_alert;
mod sim;
mod tiers;
mod tiers_api;
mod tls;
mod tokens;
mod writer;
