//! recsys.cosine, recsys.pearson (real[] and float8[]) and recsys.jaccard (bigint[]).

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::engine::{similarity, ErrorKind, RecsysError};
use crate::sql::errors::SqlResult;

fn no_nulls<T: Copy, U>(values: &[Option<T>], widen: impl Fn(T) -> U) -> SqlResult<Vec<U>> {
    values
        .iter()
        .map(|v| v.map(&widen))
        .collect::<Option<Vec<U>>>()
        .ok_or_else(|| RecsysError::new(ErrorKind::NullValue, "array must not contain NULL elements").into())
}

#[pg_extern(immutable, strict, parallel_safe, name = "cosine")]
fn cosine_real(a: Vec<Option<f32>>, b: Vec<Option<f32>>) -> Result<Option<f32>, ErrorReport> {
    let r = similarity::cosine(&no_nulls(&a, f64::from)?, &no_nulls(&b, f64::from)?)?;
    Ok(r.map(|x| x as f32))
}

#[pg_extern(immutable, strict, parallel_safe, name = "cosine")]
fn cosine_float8(a: Vec<Option<f64>>, b: Vec<Option<f64>>) -> Result<Option<f64>, ErrorReport> {
    Ok(similarity::cosine(&no_nulls(&a, |x| x)?, &no_nulls(&b, |x| x)?)?)
}

#[pg_extern(immutable, strict, parallel_safe, name = "pearson")]
fn pearson_real(a: Vec<Option<f32>>, b: Vec<Option<f32>>) -> Result<Option<f32>, ErrorReport> {
    let r = similarity::pearson(&no_nulls(&a, f64::from)?, &no_nulls(&b, f64::from)?)?;
    Ok(r.map(|x| x as f32))
}

#[pg_extern(immutable, strict, parallel_safe, name = "pearson")]
fn pearson_float8(a: Vec<Option<f64>>, b: Vec<Option<f64>>) -> Result<Option<f64>, ErrorReport> {
    Ok(similarity::pearson(&no_nulls(&a, |x| x)?, &no_nulls(&b, |x| x)?)?)
}

#[pg_extern(immutable, strict, parallel_safe)]
fn jaccard(a: Vec<Option<i64>>, b: Vec<Option<i64>>) -> Result<Option<f64>, ErrorReport> {
    Ok(similarity::jaccard(&no_nulls(&a, |x| x)?, &no_nulls(&b, |x| x)?))
}
