//! Who may do what with a model, and as whom each piece of SQL runs.
//!
//! - The caller's own SQL runs as the caller: training reads the source the caller names, and a
//!   `filter` (with an `items =>` table the caller names) runs with the caller's privileges.
//! - What a model carries runs as the model's owner (`as_model_owner`): its item_text expression
//!   and every relation it reads again at serving time (the source's live history, the items
//!   table), inside a security-restricted operation with a safe search_path — the way
//!   PostgreSQL runs index expressions and materialized views — so a role that trains a model
//!   cannot make whoever serves it run its code.
//! - The catalog (`recsys.models` and the tables hanging off it) belongs to the extension's
//!   owner; PUBLIC may only SELECT it, and row-level security shows a role the models owned by
//!   roles whose privileges it has (pg_has_role USAGE: itself, roles it inherits, or everything
//!   for a superuser). Writes go through pg_recsys alone: after checking that the caller may
//!   manage the model name, the write runs as the catalog's owner in the same kind of
//!   security-restricted operation.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use crate::sql::errors::{spi, SqlResult};

/// Restores the caller's user id and settings when the write is done, or when an error unwinds
/// through it (PostgreSQL's transaction abort restores them too).
struct AsOwner {
    user: pg_sys::Oid,
    context: i32,
    nest: i32,
}

impl Drop for AsOwner {
    fn drop(&mut self) {
        unsafe {
            pg_sys::AtEOXact_GUC(false, self.nest);
            pg_sys::SetUserIdAndSecContext(self.user, self.context);
        }
    }
}

/// The role running this call.
pub fn caller() -> pg_sys::Oid {
    unsafe { pg_sys::GetUserId() }
}

fn catalog_owner() -> SqlResult<pg_sys::Oid> {
    Spi::get_one::<pg_sys::Oid>("SELECT relowner FROM pg_catalog.pg_class WHERE oid = 'recsys.models'::pg_catalog.regclass")
        .map_err(spi)?
        .ok_or_else(|| ErrorReport::new(PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE, "recsys.models is missing", "pg_recsys"))
}

/// Run `f` as `role` the way PostgreSQL runs index expressions and materialized-view queries:
/// with `role`'s privileges, inside a security-restricted operation (no SET ROLE, no temporary
/// objects, no changes to the session), with search_path = pg_catalog, pg_temp, so that no
/// function, operator or table that a third party put on some search path can stand in for the
/// built-in one. The caller's user id and settings come back when `f` returns or unwinds.
fn as_role<T>(role: pg_sys::Oid, f: impl FnOnce() -> SqlResult<T>) -> SqlResult<T> {
    let (mut user, mut context) = (pg_sys::Oid::INVALID, 0i32);
    let guard = unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        let nest = pg_sys::NewGUCNestLevel();
        let guard = AsOwner { user, context, nest };
        pg_sys::SetUserIdAndSecContext(
            role,
            context | (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION) as i32,
        );
        set_safe_search_path();
        guard
    };
    let out = f();
    drop(guard);
    out
}

/// search_path = pg_catalog, pg_temp until the enclosing GUC nest level ends.
unsafe fn set_safe_search_path() {
    unsafe {
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
    }
}

/// `f` (which must not run SQL) with search_path = pg_catalog, pg_temp, for deparsing: names
/// that are not visible there come out schema-qualified.
pub fn with_safe_search_path<T>(f: impl FnOnce() -> T) -> T {
    let nest = unsafe {
        let nest = pg_sys::NewGUCNestLevel();
        set_safe_search_path();
        nest
    };
    let out = f();
    unsafe { pg_sys::AtEOXact_GUC(false, nest) };
    out
}

/// Run `write` (catalog statements only) as the catalog's owner, in a security-restricted
/// operation (see `as_role`; tables are schema-qualified).
pub fn as_catalog_owner<T>(write: impl FnOnce() -> SqlResult<T>) -> SqlResult<T> {
    as_role(catalog_owner()?, write)
}

/// Run what a model carries — the SQL it stored (item_text) and the relations it reads again at
/// serving time (its source table, its items table) — as the model's owner, never as the
/// caller, so that a role that trains a model cannot make whoever serves it run its code. Only
/// roles with the owner's privileges can see the model at all, so this never lets a caller read
/// more than they could already.
pub fn as_model_owner<T>(model: &str, owner: Option<pg_sys::Oid>, f: impl FnOnce() -> SqlResult<T>) -> SqlResult<T> {
    match owner {
        Some(role) => as_role(role, f),
        None => Err(ErrorReport::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("the role that owns model \"{model}\" no longer exists"),
            "pg_recsys",
        )
        .set_detail("What a model stores runs as its owner; with the owner gone it cannot be served.")
        .set_hint("retrain the model under an existing role, or drop it with recsys.drop_model")),
    }
}

/// ERROR 42501 unless `relation` can be read by a role other than its model's owner without
/// running the owner's code: a view (its functions run as the reader), a table with row-level
/// security (its policies do) or a foreign table cannot, when the caller is not `owner`.
pub fn check_reads_no_owner_code(relation: &str, model: &str, owner: Option<pg_sys::Oid>) -> SqlResult<()> {
    if owner == Some(caller()) {
        return Ok(());
    }
    let plain = crate::sql::errors::read_one::<bool>(
        "SELECT c.relkind IN ('r', 'p', 'm') AND NOT c.relrowsecurity FROM pg_catalog.pg_class c WHERE c.oid = $1::pg_catalog.regclass",
        &[relation.into()],
    )?
    .unwrap_or(false);
    if plain {
        return Ok(());
    }
    Err(ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("a filter cannot read {relation}, the items table of model \"{model}\", as you"),
        "pg_recsys",
    )
    .set_detail("It is a view, a foreign table or a table with row-level security: reading it would run code of the model's owner with your privileges.")
    .set_hint("pass items => a table you trust, or have the owner keep the items in a plain table"))
}

/// The name of role `oid`.
pub fn role_name(oid: pg_sys::Oid) -> SqlResult<String> {
    crate::sql::errors::read_one::<String>("SELECT pg_catalog.pg_get_userbyid($1)::pg_catalog.text", &[oid.into()])?
        .ok_or_else(|| ErrorReport::new(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, "role not found", "pg_recsys"))
}

/// Inside `as_catalog_owner`: ERROR 42501 unless `user` has the privileges of the role owning the
/// model `name`; returns that owner (None: no such model yet, and anyone may create it). A new
/// version keeps the name's owner, so a team role's members can all retrain its models.
pub fn check_may_manage(client: &pgrx::spi::SpiClient<'_>, name: &str, user: pg_sys::Oid) -> SqlResult<Option<String>> {
    let found = client
        .select("SELECT owner::text FROM recsys.models WHERE name = $1 ORDER BY version LIMIT 1", None, &[name.into()])
        .map_err(spi)?;
    let owner: Option<String> = if found.is_empty() { None } else { found.first().get_one().map_err(spi)? };
    let Some(owner) = owner else { return Ok(None) };
    let allowed = client
        .select(
            "SELECT CASE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = $1::name) \
                    THEN pg_has_role($2, $1::name, 'USAGE') ELSE false END",
            None,
            &[owner.clone().into(), user.into()],
        )
        .map_err(spi)?
        .first()
        .get_one::<bool>()
        .map_err(spi)?
        .unwrap_or(false);
    if allowed {
        return Ok(Some(owner));
    }
    Err(ErrorReport::new(PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE, format!("permission denied for model \"{name}\""), "pg_recsys")
        .set_detail(format!("The model is owned by role \"{owner}\"."))
        .set_hint("Train it as a member of that role (SET ROLE), or use another model name."))
}

/// ERROR 25006 in a read-only transaction (every transaction of a hot standby), before a call
/// that writes a model version does any work: serving works there, training does not.
pub fn check_writable(what: &std::ffi::CStr) {
    // SAFETY: raises the standard ERROR (unwound by pgrx) when the transaction is read-only.
    unsafe { pg_sys::PreventCommandIfReadOnly(what.as_ptr()) }
}
