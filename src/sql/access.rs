//! Who may do what with a model.
//!
//! Every function runs as its caller: training reads the source, and recommend/explain/evaluate
//! read the live history, filters and items tables with the caller's privileges. The catalog
//! (`recsys.models` and the tables hanging off it) belongs to the extension's owner; PUBLIC may
//! only SELECT it, and row-level security shows a role the models owned by roles whose privileges
//! it has (pg_has_role USAGE: itself, roles it inherits, or everything for a superuser). Writes go
//! through pg_recsys alone: after checking that the caller may manage the model name, the write
//! runs as the catalog's owner inside a security-restricted operation with a search_path of
//! pg_catalog only (as PostgreSQL does for maintenance commands), so nothing the caller defines
//! runs with the owner's rights.

use std::ffi::CString;

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

/// Run `write` (catalog statements only) as the catalog's owner, with search_path = pg_catalog,
/// pg_temp (so unqualified functions and operators are the built-in ones; tables are qualified).
pub fn as_catalog_owner<T>(write: impl FnOnce() -> SqlResult<T>) -> SqlResult<T> {
    let owner = catalog_owner()?;
    let (mut user, mut context) = (pg_sys::Oid::INVALID, 0i32);
    let guard = unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        let nest = pg_sys::NewGUCNestLevel();
        let guard = AsOwner { user, context, nest };
        pg_sys::SetUserIdAndSecContext(
            owner,
            context | (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION) as i32,
        );
        let (name, value) = (CString::new("search_path").unwrap(), CString::new("pg_catalog, pg_temp").unwrap());
        pg_sys::set_config_option(
            name.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        guard
    };
    let out = write();
    drop(guard);
    out
}

/// The name of role `oid`.
pub fn role_name(oid: pg_sys::Oid) -> SqlResult<String> {
    Spi::get_one_with_args::<String>("SELECT pg_catalog.pg_get_userbyid($1)::pg_catalog.text", &[oid.into()])
        .map_err(spi)?
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
