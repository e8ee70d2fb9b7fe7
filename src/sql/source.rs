//! The one way to read a behaviour table: resolve and type-check its columns once, read it all
//! for training (a cursor in batches), or read one user's current history for serving.

use pgrx::prelude::*;
use pgrx::{PgOid, PgRelation};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::PgSqlErrorCode;
use pgrx::spi::quote_identifier;
use serde_json::{json, Value};

use crate::engine::interactions::Interactions;
use crate::engine::memory;
use crate::engine::{ErrorKind, RecsysError};
use crate::sql::errors::{spi, SqlResult};
use crate::sql::plans;

const INTEGER_TYPES: &[&str] = &["smallint", "integer", "bigint"];
const NUMBER_TYPES: &[&str] = &["smallint", "integer", "bigint", "real", "double precision", "numeric"];
const TIME_TYPES: &[&str] =
    &["timestamp with time zone", "timestamp without time zone", "date", "smallint", "integer", "bigint"];
const BATCH: i64 = 50_000;
/// Memory per interaction while reading and building the matrix: the read vectors (user, item,
/// weight, time) and the CSR with its id maps (the 20M-row bench peaks at ~60 bytes per row).
const READ_BYTES_PER_ROW: usize = 48;

/// A behaviour table and the roles of its columns.
#[derive(Clone, Debug)]
pub struct Source {
    /// Schema-qualified, quoted: safe to splice into SQL.
    pub relation: String,
    pub user_column: String,
    pub item_column: String,
    pub rating_column: Option<String>,
    pub time_column: Option<String>,
    /// Set by `resolve`: the SQL type of the time column, to read it as seconds.
    pub time_type: Option<String>,
    /// An items table (schema-qualified, quoted) keyed by the same item column, and its text
    /// column, for models that encode item text.
    pub items: Option<String>,
    pub item_text: Option<String>,
    /// The query that reads (item id, text) from the items table, as PostgreSQL resolved it
    /// when training — every function, operator and table schema-qualified — so that serving,
    /// which runs it as the model's owner with search_path = pg_catalog, pg_temp, gets exactly
    /// what the owner meant. Absent for models trained by earlier builds (then rebuilt from item_text).
    pub item_text_query: Option<String>,
    /// Whether the item_text expression depends on its row only (no subquery, no function that
    /// is not immutable), decided when training: only then may serving keep the rows per backend
    /// (`item_cache`) and refresh them when the items table changes. Absent for models trained
    /// by earlier builds (kept, as those builds did).
    pub item_text_row_only: Option<bool>,
}

/// Summary of a full read, for NOTICEs and the catalog.
pub struct ReadStats {
    pub rows: u64,
    pub skipped: u64,
}

/// The SQL type name of `column`, which must exist and be one of `allowed`.
fn column_type(relid: pg_sys::Oid, relation: &str, column: &str, role: &str, allowed: &[&str]) -> SqlResult<String> {
    let ty: Option<String> = Spi::connect(|client| {
        let table = client
            .select(
                "SELECT format_type(atttypid, NULL) FROM pg_catalog.pg_attribute \
                 WHERE attrelid = $1 AND attname = $2 AND attnum > 0 AND NOT attisdropped",
                None,
                &[relid.into(), column.into()],
            )
            .map_err(spi)?;
        match table.into_iter().next() {
            Some(row) => row.get::<String>(1).map_err(spi),
            None => Ok(None),
        }
    })?;
    match ty {
        None => Err(RecsysError::new(
            ErrorKind::UndefinedColumn,
            format!("column \"{column}\" ({role}) does not exist in {relation}"),
        )
        .with_hint(format!("name the {role} with {role} => 'column_name'"))
        .into()),
        Some(t) if allowed.contains(&t.as_str()) => Ok(t),
        Some(t) => Err(RecsysError::new(
            ErrorKind::DatatypeMismatch,
            format!("column \"{column}\" ({role}) of {relation} has type {t}"),
        )
        .with_detail(format!("the {role} must be one of: {}", allowed.join(", ")))
        .into()),
    }
}

/// Schema-qualified and quoted: safe to splice into SQL.
pub fn qualified_name(relation: &PgRelation) -> String {
    format!("{}.{}", quote_identifier(relation.namespace()), quote_identifier(relation.name()))
}

/// Run a SELECT that embeds SQL a user wrote (an item_text expression or a filter predicate):
/// parsed first, and refused unless it is exactly one statement (a `;` in the user's text that
/// would start a second one is 42601), then prepared and run read-only with the caller's
/// privileges. Syntax errors and unknown columns come back as PostgreSQL's own errors (42601, 42703).
/// `user` (when given) is the query's `$1`, a bigint.
fn user_sql<T>(query: &str, user: Option<i64>, read: impl FnOnce(pgrx::spi::SpiTupleTable) -> SqlResult<T>) -> SqlResult<T> {
    one_statement(query)?;
    Spi::connect(|client| {
        let types = if user.is_some() { vec![PgOid::BuiltIn(PgBuiltInOids::INT8OID)] } else { Vec::new() };
        let plan = client.prepare(query, &types).map_err(spi)?;
        let args: Vec<pgrx::datum::DatumWithOid> = user.into_iter().map(Into::into).collect();
        let table = client.select(&plan, None, &args).map_err(spi)?;
        read(table)
    })
}

/// `query` through the raw parser only (no catalog access, no execution): its one parse tree and
/// the C string it points into, or 42601 when the text makes several statements.
fn one_statement(query: &str) -> SqlResult<(std::ffi::CString, *mut pg_sys::RawStmt)> {
    let text = std::ffi::CString::new(query)
        .map_err(|_| ErrorReport::new(PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE, "SQL text contains a NUL byte", "pg_recsys"))?;
    // SAFETY: backend thread; a syntax error is a PostgreSQL ERROR that unwinds through pgrx.
    let raw = unsafe { pgrx::PgList::<pg_sys::RawStmt>::from_pg(pg_sys::pg_parse_query(text.as_ptr())) };
    match (raw.len(), raw.get_ptr(0)) {
        (1, Some(stmt)) => Ok((text, stmt)),
        _ => Err(ErrorReport::new(
            PgSqlErrorCode::ERRCODE_SYNTAX_ERROR,
            "a filter or item_text must be one SQL expression, not several statements",
            "pg_recsys",
        )
        .set_detail(format!("The statement built from it would be: {query}"))),
    }
}

/// `query` (one SELECT) as PostgreSQL resolves it now — with the caller's search_path — deparsed
/// with every name that is not a built-in one schema-qualified: the text means the same under
/// search_path = pg_catalog, pg_temp; and whether its output depends on the row only (no
/// sublink, no function that is not immutable: a volatile or stable one may read other tables or
/// the clock). Parse analysis only: the query is not run here (training runs it once, as
/// `item_texts`, right after).
fn resolved(query: &str) -> SqlResult<(String, bool)> {
    let (text, stmt) = one_statement(query)?;
    // SAFETY: backend thread, inside a transaction; PostgreSQL ERRORs (unknown columns or
    // functions) unwind through pgrx's guards.
    let deparsed = unsafe {
        let analysed = pgrx::PgList::<pg_sys::Query>::from_pg(pg_sys::pg_analyze_and_rewrite_fixedparams(
            stmt,
            text.as_ptr(),
            std::ptr::null(),
            0,
            std::ptr::null_mut(),
        ));
        let Some(q) = analysed.get_ptr(0) else {
            return Err(ErrorReport::new(PgSqlErrorCode::ERRCODE_SYNTAX_ERROR, "item_text query did not analyse", "pg_recsys"));
        };
        let row_only = !(*q).hasSubLinks && !pg_sys::contain_mutable_functions((*q).targetList.cast());
        let text = crate::sql::access::with_safe_search_path(|| std::ffi::CStr::from_ptr(pg_sys::pg_get_querydef(q, false)).to_string_lossy().into_owned());
        (text, row_only)
    };
    let (text, row_only) = deparsed;
    Ok((text.trim().trim_end_matches(';').to_string(), row_only))
}

impl Source {
    /// Check that the relation and columns exist and have usable types.
    pub fn resolve(
        relation: &PgRelation,
        user_column: &str,
        item_column: &str,
        rating_column: Option<&str>,
        time_column: Option<&str>,
    ) -> SqlResult<Source> {
        let qualified = qualified_name(relation);
        let relid = relation.oid();
        column_type(relid, &qualified, user_column, "user_column", INTEGER_TYPES)?;
        column_type(relid, &qualified, item_column, "item_column", INTEGER_TYPES)?;
        if let Some(c) = rating_column {
            column_type(relid, &qualified, c, "rating_column", NUMBER_TYPES)?;
        }
        let time_type = match time_column {
            Some(c) => Some(column_type(relid, &qualified, c, "time_column", TIME_TYPES)?),
            None => None,
        };
        Ok(Source {
            relation: qualified,
            user_column: user_column.to_string(),
            item_column: item_column.to_string(),
            rating_column: rating_column.map(str::to_string),
            time_column: time_column.map(str::to_string),
            time_type,
            items: None,
            item_text: None,
            item_text_query: None,
            item_text_row_only: None,
        })
    }

    /// Add an items table, which must have the item column (an integer), and the SQL expression
    /// over its columns that gives an item's text (a column name, or e.g. `title || ' ' || genres`).
    pub fn with_items(mut self, items: &PgRelation, item_text: &str) -> SqlResult<Source> {
        let qualified = qualified_name(items);
        column_type(items.oid(), &qualified, &self.item_column, "item_column", INTEGER_TYPES)?;
        self.items = Some(qualified);
        self.item_text = Some(item_text.to_string());
        let query = self.item_text_sql();
        let (resolved, row_only) = resolved(&query)?;
        self.item_text_query = Some(resolved);
        self.item_text_row_only = Some(row_only);
        Ok(self)
    }

    /// The (item id, text) query built from the items table and the item_text expression.
    fn item_text_sql(&self) -> String {
        let (items, text) = (self.items.as_deref().unwrap_or_default(), self.item_text.as_deref().unwrap_or_default());
        let item = quote_identifier(&self.item_column);
        format!("SELECT {item}::int8, ({text}) FROM {items} WHERE {item} IS NOT NULL")
    }

    /// Every (item id, text) of the items table, read now, sorted by id (a NULL text reads as
    /// empty); an item_text expression that does not give text is an error.
    pub fn item_texts(&self) -> SqlResult<Vec<(i64, String)>> {
        let (Some(items), Some(_)) = (&self.items, &self.item_text) else { return Ok(Vec::new()) };
        let query = self.item_text_query.clone().unwrap_or_else(|| self.item_text_sql());
        user_sql(&query, None, |table| {
            let ty = table.column_type_oid(2).map_err(spi)?.value();
            if ![pg_sys::TEXTOID, pg_sys::VARCHAROID, pg_sys::BPCHAROID, pg_sys::NAMEOID].contains(&ty) {
                let name = crate::sql::errors::read_one::<String>("SELECT format_type($1, NULL)", &[ty.into()])?;
                return Err(RecsysError::new(
                    ErrorKind::DatatypeMismatch,
                    format!("item_text expression of {items} has type {}", name.unwrap_or_default()),
                )
                .with_hint("item_text must give text, for example title || ' ' || genres, or description::text")
                .into());
            }
            let mut out = Vec::with_capacity(table.len());
            for row in table {
                if let Some(i) = row.get::<i64>(1).map_err(spi)? {
                    out.push((i, row.get::<String>(2).map_err(spi)?.unwrap_or_default()));
                }
            }
            // Sorted by id (stable: a duplicated id keeps its rows' order), for the merges of
            // engine::model::untrained_rows.
            out.sort_by_key(|p| p.0);
            Ok(out)
        })
    }

    /// Ids of the rows of `items` (keyed by the item column) for which `predicate` is true.
    /// The items of `items` that pass the caller's `predicate`, in which `$1` is the user being
    /// served (bigint), so a rule can be per user ("not in this user's cart").
    pub fn filtered_items(&self, items: &str, predicate: &str, user: i64) -> SqlResult<Vec<i64>> {
        let item = quote_identifier(&self.item_column);
        let query = format!("SELECT {item}::int8 FROM {items} WHERE ({predicate})");
        user_sql(&query, Some(user), |table| {
            let mut out = Vec::with_capacity(table.len());
            for row in table {
                out.extend(row.get::<i64>(1).map_err(spi)?);
            }
            Ok(out)
        })
    }

    /// Rebuild from what `recsys.models` stored at training time.
    pub fn from_catalog(relation: String, columns: &Value) -> SqlResult<Source> {
        let get = |k: &str| columns.get(k).and_then(Value::as_str).map(str::to_string);
        match (get("user"), get("item")) {
            (Some(user_column), Some(item_column)) => Ok(Source {
                relation,
                user_column,
                item_column,
                rating_column: get("rating"),
                time_column: get("time"),
                time_type: get("time_type"),
                items: get("items"),
                item_text: get("item_text"),
                item_text_query: get("item_text_query"),
                item_text_row_only: columns.get("item_text_row_only").and_then(Value::as_bool),
            }),
            _ => Err(RecsysError::new(ErrorKind::Corrupt, "recsys.models.columns lacks user or item").into()),
        }
    }

    pub fn columns_json(&self) -> Value {
        let mut columns = json!({"user": self.user_column, "item": self.item_column,
               "rating": self.rating_column, "time": self.time_column, "time_type": self.time_type,
               "items": self.items, "item_text": self.item_text});
        if let (Some(q), Some(o)) = (&self.item_text_query, columns.as_object_mut()) {
            o.insert("item_text_query".into(), json!(q));
        }
        if let (Some(r), Some(o)) = (self.item_text_row_only, columns.as_object_mut()) {
            o.insert("item_text_row_only".into(), json!(r));
        }
        columns
    }

    /// The time column as float8 seconds since the Unix epoch (NULL without a time column).
    pub fn time_expr(&self) -> String {
        match (&self.time_column, self.time_type.as_deref()) {
            (Some(c), Some("smallint" | "integer" | "bigint")) => format!("{}::float8", quote_identifier(c)),
            (Some(c), Some(_)) => format!("extract(epoch FROM {})::float8", quote_identifier(c)),
            _ => "NULL::float8".to_string(),
        }
    }

    fn weight_expr(&self) -> String {
        match &self.rating_column {
            Some(c) => format!("{}::float8", quote_identifier(c)),
            None => "1::float8".to_string(),
        }
    }

    /// Every row, duplicates summed; rows with a NULL id or rating are skipped and counted. With a
    /// time column, each user's items in time order too (a NULL time counts as the oldest).
    /// All rows of the source, read with a cursor in batches; ERROR 54000 once the rows held
    /// would exceed recsys.max_memory_mb.
    pub fn read(&self) -> SqlResult<(Interactions, ReadStats)> {
        let timed = self.time_column.is_some() && self.time_type.is_some();
        let query = format!(
            "SELECT {}::int8, {}::int8, {}, {} FROM {}",
            quote_identifier(&self.user_column),
            quote_identifier(&self.item_column),
            self.weight_expr(),
            if timed { self.time_expr() } else { "NULL::float8".to_string() },
            self.relation
        );
        let (mut users, mut items, mut weights, mut times) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut stats = ReadStats { rows: 0, skipped: 0 };
        Spi::connect(|client| -> SqlResult<()> {
            let mut cursor = client.try_open_cursor(query.as_str(), &[]).map_err(spi)?;
            loop {
                let batch = cursor.fetch(BATCH).map_err(spi)?;
                if batch.is_empty() {
                    break;
                }
                // Room for this batch, with a failure path (ERROR 53200) rather than an abort.
                let more = batch.len();
                memory::reserve(&mut users, more, "the rows read from the source")?;
                memory::reserve(&mut items, more, "the rows read from the source")?;
                memory::reserve(&mut weights, more, "the rows read from the source")?;
                if timed {
                    memory::reserve(&mut times, more, "the rows read from the source")?;
                }
                for row in batch {
                    stats.rows += 1;
                    let u = row.get::<i64>(1).map_err(spi)?;
                    let i = row.get::<i64>(2).map_err(spi)?;
                    let w = row.get::<f64>(3).map_err(spi)?;
                    match (u, i, w) {
                        (Some(u), Some(i), Some(w)) => {
                            users.push(u);
                            items.push(i);
                            weights.push(w as f32);
                            if timed {
                                times.push(row.get::<f64>(4).map_err(spi)?);
                            }
                        }
                        _ => stats.skipped += 1,
                    }
                }
                // Free this batch's tuples now: SPI would otherwise keep every batch until the
                // end of the read (gigabytes for 20M rows).
                // SAFETY: SPI_tuptable is the table this fetch returned, consumed above and not
                // used again.
                unsafe { pg_sys::SPI_freetuptable(pg_sys::SPI_tuptable) };
                pgrx::check_for_interrupts!();
                // The rows held so far and the matrix built from them, against the cap, so that a
                // table too large for it stops here and not in an out-of-memory kill.
                let needed = users.len() * READ_BYTES_PER_ROW;
                if needed > crate::sql::gucs::max_memory_bytes() {
                    let how = format!("for the {} rows read so far, at {READ_BYTES_PER_ROW} bytes per row", users.len());
                    return Err(crate::sql::gucs::over_memory_cap(&format!("reading {}", self.relation), needed as u128, &how).into());
                }
            }
            Ok(())
        })?;
        let data = if timed {
            Interactions::with_times(&users, &items, &weights, &times)
        } else {
            Interactions::from_triplets(&users, &items, &weights)
        };
        let data = data
            .map_err(|e| if e.kind == ErrorKind::InvalidParameter && users.is_empty() {
                e.with_detail(format!("{} has {} rows, none with a non-NULL user, item and rating", self.relation, stats.rows))
            } else {
                e
            })?;
        Ok((data, stats))
    }

    /// Whether serving can find a user's rows by an index: false for a table, materialized view
    /// or partitioned table with no index whose first column is the user column (views and
    /// foreign tables count as indexed: their owners decide).
    pub fn has_user_index(&self) -> SqlResult<bool> {
        let missing = Spi::get_one_with_args::<bool>(
            "SELECT c.relkind IN ('r', 'm', 'p') AND NOT EXISTS (
                 SELECT 1 FROM pg_catalog.pg_index i
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                 WHERE i.indrelid = c.oid AND a.attname = $2)
             FROM pg_catalog.pg_class c WHERE c.oid = $1::regclass",
            &[self.relation.as_str().into(), self.user_column.as_str().into()],
        )
        .map_err(spi)?;
        Ok(!missing.unwrap_or(false))
    }

    /// One user's current interactions (item id, summed weight), read at call time; in order of
    /// each item's latest time (oldest first) when there is a time column.
    pub fn history(&self, user_id: i64) -> SqlResult<Vec<(i64, f32)>> {
        let weight = match &self.rating_column {
            Some(c) => format!("sum({})::float4", quote_identifier(c)),
            None => "count(*)::float4".to_string(),
        };
        let item = quote_identifier(&self.item_column);
        let order = match &self.time_column {
            Some(t) => format!(" ORDER BY max({}) NULLS FIRST, 1", quote_identifier(t)),
            None => String::new(),
        };
        let query = format!(
            "SELECT {item}::int8, {weight} FROM {} WHERE {} = $1 AND {item} IS NOT NULL GROUP BY 1{order}",
            self.relation,
            quote_identifier(&self.user_column),
        );
        Spi::connect(|client| {
            let plan = plans::kept(&client, &query, &[PgOid::BuiltIn(PgBuiltInOids::INT8OID)])?;
            let table = client.select(&*plan, None, &[user_id.into()]).map_err(spi)?;
            let mut out = Vec::with_capacity(table.len());
            for row in table {
                if let (Some(i), Some(w)) = (row.get::<i64>(1).map_err(spi)?, row.get::<f32>(2).map_err(spi)?) {
                    out.push((i, w));
                }
            }
            Ok(out)
        })
    }
}
