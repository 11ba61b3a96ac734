//! Portcullis: an authenticating reverse proxy for API keys, organizations,
//! workspaces and roles.
//!
//! A request flows through [`routing`] (canonical path and route rule),
//! [`credential`] (key shape and hash), [`cache`] and [`store`] (who the key
//! acts for), [`authz`] (workspace and permission), and [`proxy`] (forwarding
//! with identity headers). [`server`] runs it on a listener; [`cli`] is the
//! command line.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod admin;
pub mod authn;
pub mod authz;
pub mod cache;
pub mod cli;
pub mod config;
pub mod credential;
pub mod error;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod routing;
pub mod server;
pub mod store;
pub mod tls;
