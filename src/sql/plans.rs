//! Plans of the serving queries, kept for the backend's lifetime (SPI_keepplan): the queries
//! every recommend call runs (the deployed model row, the user's live history) are parsed and
//! planned once per backend, not on every call. PostgreSQL re-validates a kept plan by itself
//! when a table or index it uses changes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::PgOid;

use crate::sql::errors::{spi, SqlResult};

/// Distinct query texts kept at once (one per source table in use, plus the catalog's).
const MAX_PLANS: usize = 64;

thread_local! {
    static PLANS: RefCell<HashMap<String, Rc<OwnedPreparedStatement>>> = RefCell::new(HashMap::new());
}

/// The kept plan of `query` with parameters of `types`, prepared on first use.
pub fn kept(client: &SpiClient<'_>, query: &str, types: &[PgOid]) -> SqlResult<Rc<OwnedPreparedStatement>> {
    if let Some(plan) = PLANS.with_borrow(|p| p.get(query).cloned()) {
        return Ok(plan);
    }
    let plan = Rc::new(client.prepare(query, types).map_err(spi)?.keep());
    PLANS.with_borrow_mut(|p| {
        if p.len() >= MAX_PLANS {
            p.clear();
        }
        p.insert(query.to_string(), plan.clone());
    });
    Ok(plan)
}
