//! The data model of reelrank: catalog [`Item`]s, [`User`]s and behaviour [`Event`]s.
//!
//! Every type here is plain data with serde support. Records that come from outside (HTTP bodies,
//! CSV files, importers) are checked with [`Validate`], which reports each problem as a
//! [`FieldError`] naming the field, so that callers can reject a whole batch before anything is
//! written.
//!
//! ```
//! use reelrank_core::{Event, Validate};
//! let event: Event = serde_json::from_str(
//!     r#"{"user_id":"u1","item_id":"v9","kind":"watch","value":42000,"ts":"2026-05-01T12:00:00Z"}"#,
//! ).unwrap();
//! assert!(event.validate().is_empty());
//! ```
#![warn(missing_docs)]

mod breaker;
mod event;
mod item;
mod moderation;
mod time;
mod top_k;
mod user;
mod validate;

pub use breaker::Breaker;
pub use event::{Event, EventContext, EventKind};
pub use item::{Category, Item, ModerationStatus};
pub use moderation::{CreatorDecision, ItemDecision, CREATOR_BLOCKED, REVIEW_FLAGS};
pub use time::Timestamp;
pub use top_k::{by_score, top_k};
pub use user::{AttributeValue, User, UserControls};
pub use validate::{from_json_value, FieldError, Validate};
