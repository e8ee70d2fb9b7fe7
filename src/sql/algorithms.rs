//! recsys.algorithm_catalog() (behind the view recsys.algorithms): every algorithm with its
//! family, what it needs, and its params with defaults and allowed values, read from the engine's
//! own parsing code so the list cannot drift from what train accepts.

use pgrx::prelude::*;
use pgrx::JsonB;

#[allow(clippy::type_complexity)]
#[pg_extern(immutable, parallel_safe)]
fn algorithm_catalog() -> TableIterator<
    'static,
    (
        name!(name, String),
        name!(family, String),
        name!(needs_ratings, bool),
        name!(needs_time, bool),
        name!(needs_item_text, bool),
        name!(neural, bool),
        name!(params, JsonB),
        name!(description, String),
    ),
> {
    TableIterator::new(crate::engine::model::algorithm_catalog().into_iter().map(|a| {
        (
            a.name.to_string(),
            a.family.to_string(),
            a.needs_ratings,
            a.needs_time,
            a.needs_item_text,
            a.neural,
            JsonB(a.params),
            a.description.to_string(),
        )
    }))
}
