//! The dashboard suites' browser ([`chrome`]) and the server they drive: the real `skycat serve`
//! router on a loopback port serving the real embedded catalog, with token auth.

#![allow(dead_code)]

mod chrome;
pub use chrome::*;

use skycat_server::{AppBuilder, ServerConfig};

use crate::common::TestServer;

/// The real catalog `skycat serve` loads from an empty home: the embedded default.
pub fn embedded_catalog(home: &std::path::Path) -> skycat_server::CatalogData {
    skycat_server::load_catalog(&skycat_catalog::SkycatHome::new(home)).expect("load the embedded catalog")
}

/// A server with the embedded catalog and token auth, reading history from `home`.
pub async fn start_server(home: &std::path::Path) -> TestServer {
    let data = embedded_catalog(home);
    let config = ServerConfig {
        auth: Some(auth()),
        public_read: false,
        home: Some(skycat_catalog::SkycatHome::new(home)),
        ..ServerConfig::default()
    };
    let builder = AppBuilder::new(data).config(config);
    TestServer::start(builder).await
}
