//! Shared test support: spec fixtures and a fake API server on tower-test.
#![allow(dead_code)]

pub mod api;
pub mod fake;
pub mod fixtures;
pub mod tools;
