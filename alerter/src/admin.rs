//! Library functions for the REST API.
