//! Per-backend cache of decoded models, so serving does not re-read and decode the blob on every
//! call. Keyed by model version (id and training time); bounded by `recsys.model_cache_size`.

use std::cell::RefCell;
use std::rc::Rc;

use crate::engine::model::Model;
use crate::sql::catalog::{self, ModelRow};
use crate::sql::errors::SqlResult;
use crate::sql::gucs;

type Key = (i64, String);

thread_local! {
    /// Most recently used last.
    static CACHE: RefCell<Vec<(Key, Rc<Model>)>> = const { RefCell::new(Vec::new()) };
}

pub fn get(row: &ModelRow) -> SqlResult<Rc<Model>> {
    let key: Key = (row.id, row.trained_at.clone());
    let capacity = gucs::model_cache_size();
    let hit = CACHE.with_borrow_mut(|cache| {
        let pos = cache.iter().position(|(k, _)| *k == key)?;
        let entry = cache.remove(pos);
        let model = entry.1.clone();
        cache.push(entry);
        Some(model)
    });
    if let Some(model) = hit {
        return Ok(model);
    }
    let model = Rc::new(catalog::load(row)?);
    CACHE.with_borrow_mut(|cache| {
        if capacity > 0 {
            cache.push((key, model.clone()));
        }
        let excess = cache.len().saturating_sub(capacity);
        cache.drain(..excess);
    });
    Ok(model)
}
