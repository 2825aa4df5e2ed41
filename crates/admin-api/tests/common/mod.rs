//! Shared by the admin API test suites.
#![allow(dead_code)]

pub mod http;
pub mod prom;
