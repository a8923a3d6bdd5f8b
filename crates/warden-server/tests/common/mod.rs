//! Support shared by the server's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use warden_server::{Overrides, ServerConfig};

/// The admin token every test server is configured with.
pub const TOKEN: &str = "test-admin-token-0123456789";

/// A server configuration on `127.0.0.1:0` enforcing `policy` (a file or a
/// directory), keeping its state in `data_dir`, with [`TOKEN`] as admin token.
pub fn config(policy: &Path, data_dir: &Path) -> ServerConfig {
    let mut config = ServerConfig::resolve(
        None,
        |_| None,
        Overrides {
            listen: Some("127.0.0.1:0".to_owned()),
            policy: vec![policy.to_path_buf()],
            data_dir: Some(data_dir.to_path_buf()),
            ..Overrides::default()
        },
    )
    .unwrap();
    config.admin_token = Some(TOKEN.to_owned());
    config
}
