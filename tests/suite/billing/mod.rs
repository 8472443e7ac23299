//! The billing crate's own end-to-end tests: meter, invoices, and the
//! reconciliation of invoices against an independent computation.

mod common;

mod corrections;
mod invoices;
mod meter;
mod quantities;
mod reconcile;
mod tax;
