//! The far side of the API: [`client`] signs and sends calls to a running server (as the
//! official SDKs do), [`profile`] finds the endpoint and key pair, [`commands`] are the
//! `db`, `add` and `search` subcommands, [`import`] adds a directory or a CSV manifest in
//! parallel, resumably, [`dedup`] lists the groups of copies in a database, [`export`] writes a database as a
//! manifest and pictures that `import` reads back. Nothing here reaches into the server's internals: it shares only
//! `crate::signing`, `crate::rules` and `crate::http_client` with it.

pub mod client;
pub mod commands;
pub mod dedup;
pub mod export;
pub mod import;
pub mod profile;
