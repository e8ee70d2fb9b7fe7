//! Per-backend cache of the items table's (item id, text) rows of text models, so that serving
//! does not read the whole items table on every call. Keyed by model version and items table;
//! refreshed only when the table changed, which is detected cheaply and exactly:
//!
//! - a stamp of the table — its file (relfilenode: TRUNCATE, VACUUM FULL, CLUSTER give a new
//!   one), its number of pages, and the largest LSN of any of its pages. Every insert, update
//!   and delete writes WAL for the page it changes and sets that page's LSN past every earlier
//!   one (on a standby, replay does the same), so any change raises the largest LSN. Reading
//!   it costs one shared-buffer visit per page, not a read of the rows and their text;
//! - a change that is already on the pages but not visible yet (a transaction in progress, or
//!   one that committed after this statement's snapshot) would later become visible without
//!   touching a page. So a reading is cached only when, scanning every tuple version of the
//!   table, no inserting or deleting transaction is still in progress for this snapshot (nor
//!   this transaction's own); otherwise it serves this call and is read again next time.
//!
//! Only plain permanent tables without row-level security are cached (for a view, an unlogged
//! or temporary table, a partitioned table or one with policies, the rows are read on every call,
//! as before), and only when the item_text expression depends on its row only (no subquery,
//! no function that is not immutable; decided at training, `Source::item_text_row_only`).

use std::cell::RefCell;
use std::rc::Rc;

use pgrx::prelude::*;

use crate::sql::catalog::ModelRow;
use crate::sql::errors::SqlResult;

pub type Texts = Rc<Vec<(i64, String)>>;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Stamp {
    file: u32,
    pages: u32,
    lsn: u64,
}

struct Entry {
    model: (i64, String),
    table: pg_sys::Oid,
    stamp: Stamp,
    texts: Texts,
    /// The rows of `texts` the model was not trained on, once asked for.
    untrained: Option<Texts>,
}

/// The rows of `texts` whose item is not in `trained` (the model's sorted item ids).
fn untrained_of(texts: &[(i64, String)], trained: &[i64]) -> Texts {
    Rc::new(crate::engine::model::untrained_rows(trained, texts).into_iter().cloned().collect())
}

/// Entries kept (one per text model served by this backend, most recent last).
const ENTRIES: usize = 8;

thread_local! {
    static CACHE: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

/// The stamp of a plain permanent table without row security; None for anything else.
fn stamp(table: pg_sys::Oid) -> Option<Stamp> {
    // SAFETY: the relation is opened and closed with a lock; each page is pinned and share-
    // locked while its header is read; an ERROR inside releases both (resource owner).
    unsafe {
        let rel = pg_sys::relation_open(table, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let form = &*(*rel).rd_rel;
        let plain = form.relkind as u8 == pg_sys::RELKIND_RELATION
            && form.relpersistence as u8 == pg_sys::RELPERSISTENCE_PERMANENT
            && !form.relrowsecurity;
        let out = plain.then(|| {
            let pages = pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM);
            let mut lsn = 0u64;
            for page in 0..pages {
                let buf = pg_sys::ReadBufferExtended(rel, pg_sys::ForkNumber::MAIN_FORKNUM, page, pg_sys::ReadBufferMode::RBM_NORMAL, std::ptr::null_mut());
                pg_sys::LockBuffer(buf, pg_sys::BUFFER_LOCK_SHARE as i32);
                let header = pg_sys::BufferGetPage(buf) as *const pg_sys::PageHeaderData;
                let at = (*header).pd_lsn;
                lsn = lsn.max(((at.xlogid as u64) << 32) | at.xrecoff as u64);
                pg_sys::UnlockReleaseBuffer(buf);
            }
            Stamp { file: (*rel).rd_node.relNode.into(), pages, lsn }
        });
        pg_sys::relation_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        out
    }
}

/// True when no tuple version of the table carries a change that a later snapshot could see
/// differently from this one: no inserter or deleter in progress for the active snapshot, and
/// none of this transaction's own (a rollback would hide it without touching a page).
fn settled(table: pg_sys::Oid) -> bool {
    // SAFETY: a heap scan with SnapshotAny over a locked relation reads tuple headers only;
    // the scan and relation are ended and closed before returning.
    unsafe {
        let snapshot = pg_sys::GetActiveSnapshot();
        if snapshot.is_null() {
            return false;
        }
        let unsettled = |xid: pg_sys::TransactionId| {
            pg_sys::TransactionIdIsCurrentTransactionId(xid) || pg_sys::XidInMVCCSnapshot(xid, snapshot)
        };
        let rel = pg_sys::relation_open(table, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let scan = pg_sys::heap_beginscan(
            rel,
            &raw mut pg_sys::SnapshotAnyData,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            pg_sys::ScanOptions::SO_TYPE_SEQSCAN,
        );
        let mut ok = true;
        loop {
            let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tuple.is_null() {
                break;
            }
            let h = &*(*tuple).t_data;
            let mask = h.t_infomask as u32;
            let xmin = h.t_choice.t_heap.t_xmin;
            let xmax = h.t_choice.t_heap.t_xmax;
            let frozen = mask & pg_sys::HEAP_XMIN_FROZEN == pg_sys::HEAP_XMIN_FROZEN;
            if !frozen && unsettled(xmin) {
                ok = false;
                break;
            }
            let deleted = mask & pg_sys::HEAP_XMAX_INVALID == 0 && xmax != pg_sys::InvalidTransactionId;
            if deleted && mask & pg_sys::HEAP_XMAX_LOCK_ONLY == 0 && (mask & pg_sys::HEAP_XMAX_IS_MULTI != 0 || unsettled(xmax)) {
                ok = false;
                break;
            }
        }
        pg_sys::heap_endscan(scan);
        pg_sys::relation_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        ok
    }
}

/// What `to_regclass(name)` gives, without running a query (this is on every call): the name
/// parsed as a possibly qualified identifier and looked up in the current search_path, no lock
/// taken; None when there is no such relation.
fn regclass(name: &str) -> Option<pg_sys::Oid> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: pgrx's guarded calls; the parse and lookup allocate in the current memory context,
    // and a malformed name is an ERROR raised through the guard.
    let oid = unsafe {
        let names = pg_sys::stringToQualifiedNameList(name.as_ptr());
        let range = pg_sys::makeRangeVarFromNameList(names);
        pg_sys::RangeVarGetRelidExtended(range, pg_sys::NoLock as pg_sys::LOCKMODE, pg_sys::RVROption::RVR_MISSING_OK as u32, None, std::ptr::null_mut())
    };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// The item texts of `row`'s items table `items`: from the cache when the table has not
/// changed since they were read, else `read()` (and kept when the reading is settled). Rows
/// whose text is not `row_only` (a subquery, or a function that is not immutable, in item_text)
/// are read on every call: a change elsewhere would not show in the items table's stamp.
/// With `untrained_only` (the model's sorted item ids), only the rows of items it was not
/// trained on, which is all that scoring needs: kept beside the rows, so that a call does not
/// sift the whole catalogue for the few items added since training.
pub fn texts(row: &ModelRow, items: &str, row_only: bool, untrained_only: Option<&[i64]>, read: impl FnOnce() -> SqlResult<Vec<(i64, String)>>) -> SqlResult<Texts> {
    let view = |texts: Texts| match untrained_only {
        Some(trained) => untrained_of(&texts, trained),
        None => texts,
    };
    // A catalog lookup (no query, no transaction id: the serving path runs on hot standbys).
    let table = if row_only { regclass(items) } else { None };
    let Some(table) = table else {
        // Not to be kept, or gone (then the read reports it with its SQLSTATE).
        return Ok(view(Rc::new(read()?)));
    };
    let model = (row.id, row.trained_at.clone());
    let before = stamp(table);
    if let Some(now) = before {
        let hit = CACHE.with_borrow_mut(|c| {
            let e = c.iter_mut().find(|e| e.model == model && e.table == table && e.stamp == now)?;
            Some(match untrained_only {
                Some(trained) => e.untrained.get_or_insert_with(|| untrained_of(&e.texts, trained)).clone(),
                None => e.texts.clone(),
            })
        });
        if let Some(texts) = hit {
            return Ok(texts);
        }
    }
    let texts: Texts = Rc::new(read()?);
    let untrained = untrained_only.map(|trained| untrained_of(&texts, trained));
    if let Some(stamp) = before.filter(|_| settled(table)) {
        CACHE.with_borrow_mut(|c| {
            c.retain(|e| !(e.model == model && e.table == table));
            c.push(Entry { model, table, stamp, texts: texts.clone(), untrained: untrained.clone() });
            if c.len() > ENTRIES {
                c.remove(0);
            }
        });
    }
    Ok(untrained.unwrap_or(texts))
}
