//! The input rules every backend applies before it writes, so that the backends accept the
//! same inputs whatever their storage could hold: a non-finite position is refused (SQLite
//! would keep a NaN as NULL), and so is a webhook kind that is empty or holds a comma (SQLite
//! keeps the kinds comma-separated).

use crate::error::{Result, StoreError};
use crate::{NewPing, NewWebhook};

/// [`StoreError::Invalid`] naming the first ping of `batch` with a non-finite lon or lat.
pub(crate) fn check_positions(batch: &[NewPing]) -> Result<()> {
    match batch
        .iter()
        .position(|p| !p.ping.lon.is_finite() || !p.ping.lat.is_finite())
    {
        Some(index) => Err(StoreError::Invalid(format!(
            "ping {index} has a non-finite longitude or latitude"
        ))),
        None => Ok(()),
    }
}

/// [`StoreError::Invalid`] naming the first kind of `webhook` that is empty or has a comma.
pub(crate) fn check_kinds(webhook: &NewWebhook) -> Result<()> {
    match webhook
        .kinds
        .iter()
        .find(|k| k.is_empty() || k.contains(','))
    {
        Some(kind) => Err(StoreError::Invalid(format!(
            "webhook kind '{kind}' is empty or contains a comma"
        ))),
        None => Ok(()),
    }
}
