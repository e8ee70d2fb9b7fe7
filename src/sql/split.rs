//! recsys.split: materialise the source once, choose the test rows in the engine, and create the
//! two tables with the source's columns. Everything happens in the caller's transaction.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::PgRelation;

use crate::engine::split::{self, Method, Row};
use crate::engine::RecsysError;
use crate::sql::errors::{required, spi, SqlResult};
use crate::sql::source::Source;
use crate::sql::PG_EPOCH_OFFSET;


/// A possibly schema-qualified name, quoted; refuses a relation that exists already.
fn new_table_name(name: &str) -> SqlResult<String> {
    let quoted: Option<String> = Spi::get_one_with_args(
        "SELECT string_agg(quote_ident(p), '.' ORDER BY o) FROM unnest(parse_ident($1)) WITH ORDINALITY u(p, o)",
        &[name.into()],
    )
    .map_err(spi)?;
    let quoted = quoted.ok_or_else(|| RecsysError::invalid(format!("invalid table name \"{name}\"")))?;
    let exists = Spi::get_one_with_args::<bool>("SELECT to_regclass($1) IS NOT NULL", &[quoted.as_str().into()]).map_err(spi)?;
    if exists == Some(true) {
        return Err(ErrorReport::new(
            PgSqlErrorCode::ERRCODE_DUPLICATE_TABLE,
            format!("relation \"{name}\" already exists"),
            "pg_recsys",
        )
        .set_hint("drop it first or choose another name"));
    }
    Ok(quoted)
}

#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile)]
fn split(
    source: Option<PgRelation>,
    train_table: Option<&str>,
    test_table: Option<&str>,
    method: default!(Option<&str>, "'random'"),
    test_fraction: default!(Option<f64>, 0.2),
    seed: default!(Option<i64>, 42),
    user_column: default!(Option<&str>, "'user_id'"),
    item_column: default!(Option<&str>, "'item_id'"),
    time_column: default!(Option<&str>, "NULL"),
    cutoff: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> Result<TableIterator<'static, (name!(split, String), name!(table_name, String), name!(rows, i64), name!(users, i64))>, ErrorReport> {
    let source = required(source, "source")?;
    let (train_name, test_name) = (required(train_table, "train_table")?, required(test_table, "test_table")?);
    let fraction = required(test_fraction, "test_fraction")?;
    let seed = required(seed, "seed")?;
    let cutoff = cutoff.map(|c| pg_sys::TimestampTz::from(c) as f64 / 1e6 + PG_EPOCH_OFFSET as f64);
    let method = Method::parse(required(method, "method")?, cutoff)?;
    split::check_fraction(fraction)?;
    if method.needs_time() && time_column.is_none() {
        return Err(RecsysError::invalid("this split method needs time_column").into());
    }
    let source = Source::resolve(&source, required(user_column, "user_column")?, required(item_column, "item_column")?, None, time_column)?;
    let train_q = new_table_name(train_name)?;
    let test_q = new_table_name(test_name)?;
    if train_q == test_q {
        return Err(RecsysError::invalid("train_table and test_table must differ").into());
    }

    Spi::connect_mut(|client| -> SqlResult<_> {
        // Left over from a split that failed earlier in this session? (Checked, not DROP ... IF
        // EXISTS, which would NOTICE about a temporary schema the session does not have yet.)
        for t in ["recsys_split_rows", "recsys_split_test"] {
            let left = client
                .select("SELECT pg_catalog.to_regclass($1) IS NOT NULL", None, &[format!("pg_temp.{t}").into()])
                .map_err(spi)?
                .first()
                .get_one::<bool>()
                .map_err(spi)?
                .unwrap_or(false);
            if left {
                client.update(&format!("DROP TABLE pg_temp.{t}"), None, &[]).map_err(spi)?;
            }
        }
        client
            .update(
                &format!(
                    "CREATE TEMP TABLE recsys_split_rows AS SELECT row_number() OVER () AS rn, recsys_src AS rec, \
                     recsys_src.{}::int8 AS u, recsys_src.{}::int8 AS i, {} AS t FROM {} recsys_src",
                    pgrx::spi::quote_identifier(&source.user_column),
                    pgrx::spi::quote_identifier(&source.item_column),
                    source.time_expr(),
                    source.relation
                ),
                None,
                &[],
            )
            .map_err(spi)?;
        let mut rows = Vec::new();
        let table = client.select("SELECT rn, u, i, t FROM pg_temp.recsys_split_rows WHERE u IS NOT NULL AND i IS NOT NULL", None, &[]).map_err(spi)?;
        for r in table {
            let (rn, u, i) = (r.get::<i64>(1).map_err(spi)?, r.get::<i64>(2).map_err(spi)?, r.get::<i64>(3).map_err(spi)?);
            if let (Some(rn), Some(user), Some(item)) = (rn, u, i) {
                rows.push(Row { key: rn as u64, user, item, time: r.get::<f64>(4).map_err(spi)? });
            }
        }
        pgrx::check_for_interrupts!();
        let is_test = split::split(&rows, method, fraction, seed)?;
        let test_rns: Vec<i64> = rows.iter().zip(&is_test).filter(|(_, &t)| t).map(|(r, _)| r.key as i64).collect();
        let count_users = |want: bool| {
            let mut users: Vec<i64> = rows.iter().zip(&is_test).filter(|(_, &t)| t == want).map(|(r, _)| r.user).collect();
            users.sort_unstable();
            users.dedup();
            users.len() as i64
        };
        let (train_users, test_users) = (count_users(false), count_users(true));

        client.update("CREATE TEMP TABLE recsys_split_test (rn int8 PRIMARY KEY)", None, &[]).map_err(spi)?;
        client.update("INSERT INTO pg_temp.recsys_split_test SELECT unnest($1::int8[])", None, &[test_rns.into()]).map_err(spi)?;
        let mut counts = Vec::new();
        for (name, keep) in [(&train_q, "NOT EXISTS"), (&test_q, "EXISTS")] {
            client.update(&format!("CREATE TABLE {name} (LIKE {})", source.relation), None, &[]).map_err(spi)?;
            let n = client
                .update(
                    &format!(
                        "INSERT INTO {name} SELECT (r.rec).* FROM pg_temp.recsys_split_rows r \
                         WHERE {keep} (SELECT 1 FROM pg_temp.recsys_split_test t WHERE t.rn = r.rn) ORDER BY r.rn"
                    ),
                    None,
                    &[],
                )
                .map_err(spi)?
                .len();
            counts.push(n as i64);
        }
        client.update("DROP TABLE pg_temp.recsys_split_rows, pg_temp.recsys_split_test", None, &[]).map_err(spi)?;
        Ok(TableIterator::new(vec![
            ("train".to_string(), train_q.clone(), counts[0], train_users),
            ("test".to_string(), test_q.clone(), counts[1], test_users),
        ]))
    })
}

