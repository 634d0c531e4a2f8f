//! The axum state: the shared service state and the ingest side (stream table,
//! idempotency keys). Handlers receive it; it derefs to [`Shared`].

use super::ingest::Ingest;
use super::state::Shared;
use std::sync::Arc;

#[derive(Clone)]
pub struct App {
    pub shared: Arc<Shared>,
    pub ingest: Arc<Ingest>,
}

impl App {
    /// Rebuilds the ingest-side stream table from the current catalog.
    pub fn refresh_streams(&self) {
        self.ingest.refresh(&self.shared);
    }
}

impl std::ops::Deref for App {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}
