//! gpuwatch alerter: alert rule evaluation, persistent alert state, grouping/silences/inhibition, webhook and e-mail delivery.
//!
//! Empty on purpose: this role arrives with its own issue, and until then
//! the crate holds nothing rather than a pretend implementation.
#![forbid(unsafe_code)]
