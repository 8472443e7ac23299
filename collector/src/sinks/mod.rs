//! Where batches go, one file per sink.

pub mod copy;
