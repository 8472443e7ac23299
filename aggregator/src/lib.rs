//! gpuwatch aggregator: rollup tiers (hourly, daily), retention, partition upkeep and host liveness.
//!
//! Empty on purpose: this role arrives with its own issue, and until then
//! the crate holds nothing rather than a pretend implementation.
#![forbid(unsafe_code)]
