//! Where an importer's records go: into the store, or nowhere, when a file is only checked
//! (`reelrank import ... --check`, and the fuzz targets, which need no database).

use reelrank_core::{Event, Item, User};
use reelrank_store::Store;

use crate::{ArrivalPolicy, ImportError};

/// Where imported records go.
#[derive(Clone, Copy)]
pub enum Destination<'a> {
    /// Written to `store` under `policy`, batch by batch.
    Store {
        /// The store.
        store: &'a Store,
        /// Moderation on arrival.
        policy: ArrivalPolicy,
    },
    /// Only checked: every row is read and validated, nothing is written.
    Check,
}

impl Destination<'_> {
    pub(crate) async fn items(self, batch: Vec<Item>) -> Result<(), ImportError> {
        if let Destination::Store { store, policy } = self {
            store.upsert_items(&batch, policy.default_item_status).await?;
        }
        Ok(())
    }

    pub(crate) async fn users(self, batch: Vec<User>) -> Result<(), ImportError> {
        if let Destination::Store { store, .. } = self {
            store.upsert_users(&batch).await?;
        }
        Ok(())
    }

    pub(crate) async fn events(self, batch: Vec<Event>) -> Result<(), ImportError> {
        if let Destination::Store { store, policy } = self {
            crate::append_events(store, &batch, policy, None).await?;
        }
        Ok(())
    }
}
