//! Per-backend cache of decoded models, so serving does not re-read and decode the blob on every
//! call. Keyed by model version (id and training time); bounded in bytes by
//! `recsys.model_cache_mb` (each model counted at its stored size, which its decoded arrays
//! mirror), least recently used evicted first. A model larger than the whole budget is served
//! but not kept.

use std::cell::RefCell;
use std::rc::Rc;

use crate::engine::model::Model;
use crate::sql::catalog::{self, ModelRow};
use crate::sql::errors::SqlResult;
use crate::sql::gucs;

type Key = (i64, String);

struct Entry {
    key: Key,
    model: Rc<Model>,
    bytes: usize,
}

thread_local! {
    /// Most recently used last.
    static CACHE: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

pub fn get(row: &ModelRow) -> SqlResult<Rc<Model>> {
    // What is served from here runs on the backend's thread, none other (see the function).
    crate::engine::neural::serve_on_this_thread();
    let key: Key = (row.id, row.trained_at.clone());
    let budget = gucs::model_cache_bytes();
    let hit = CACHE.with_borrow_mut(|cache| {
        let pos = cache.iter().position(|e| e.key == key)?;
        let entry = cache.remove(pos);
        let model = entry.model.clone();
        cache.push(entry);
        Some(model)
    });
    if let Some(model) = hit {
        return Ok(model);
    }
    let (model, bytes) = catalog::load(row)?;
    let model = Rc::new(model);
    CACHE.with_borrow_mut(|cache| {
        if bytes <= budget {
            cache.push(Entry { key, model: model.clone(), bytes });
        }
        let mut total: usize = cache.iter().map(|e| e.bytes).sum();
        while total > budget && !cache.is_empty() {
            total -= cache.remove(0).bytes;
        }
    });
    Ok(model)
}

/// (models kept, bytes they count for) in this backend, for the tests.
#[cfg(any(test, feature = "pg_test"))]
pub fn usage() -> (usize, usize) {
    CACHE.with_borrow(|cache| (cache.len(), cache.iter().map(|e| e.bytes).sum()))
}
