//! What every handler shares, made once at start-up by `app.rs` and read by the handlers. It sits
//! below them: a handler imports this, never the file that builds the routes.

use std::sync::Arc;

use store::Store;

use crate::config::Config;
use crate::enforce::Enforcement;
use crate::import_pool::ImportPool;
use crate::metrics::Metrics;
use identity::Identity;

pub struct AppState {
    pub config: Arc<Config>,
    /// The trusted token issuers: how a request's principal is made.
    pub identity: Identity,
    /// The storage layer, for what is not clinical data: audit records, the audit log, health.
    pub store: Store,
    /// The one way to clinical data: every row that leaves is judged here first.
    pub enforcement: Arc<Enforcement>,
    pub metrics: Arc<Metrics>,
    /// The threads that file the lines of bulk imports.
    pub imports: ImportPool,
}
