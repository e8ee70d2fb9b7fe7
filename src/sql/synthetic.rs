//! recsys.synthetic_interactions: deterministic demo and test data, streamed row by row.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::engine::synthetic::{Synthetic, SyntheticParams};
use crate::sql::PG_EPOCH_OFFSET;


#[pg_extern(immutable, strict, parallel_safe)]
fn synthetic_interactions(
    users: i32,
    items: i32,
    interactions: i64,
    seed: default!(i64, 42),
) -> Result<TableIterator<'static, (name!(user_id, i64), name!(item_id, i64), name!(rating, f32), name!(ts, Option<TimestampWithTimeZone>))>, ErrorReport> {
    let p = SyntheticParams { users: users as i64, items: items as i64, interactions, seed };
    crate::engine::synthetic::validate(&p)?;
    let needed = crate::engine::synthetic::memory_estimate(&p);
    if needed > crate::sql::gucs::max_memory_bytes() as u128 {
        return Err(crate::sql::gucs::over_memory_cap("synthetic_interactions", needed, &format!("for {users} users and {items} items")).into());
    }
    let rows = Synthetic::new(&p)?;
    Ok(TableIterator::new(rows.enumerate().map(|(k, r)| {
        if k % 65_536 == 0 {
            pgrx::check_for_interrupts!();
        }
        let ts = TimestampWithTimeZone::try_from((r.unix_seconds - PG_EPOCH_OFFSET) * 1_000_000).ok();
        (r.user_id, r.item_id, r.rating, ts)
    })))
}
