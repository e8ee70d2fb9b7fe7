//! Similarity of two vectors or two sets, computed in double precision.
//! `None` means "undefined" (empty input, a zero vector, zero variance); the SQL layer returns NULL.

use crate::engine::{RecsysError, Result};

fn check_pair(a: &[f64], b: &[f64]) -> Result<()> {
    if a.len() != b.len() {
        return Err(RecsysError::invalid(format!(
            "arrays must have the same length, got {} and {}",
            a.len(),
            b.len()
        )));
    }
    if a.iter().chain(b).any(|x| !x.is_finite()) {
        return Err(RecsysError::invalid("arrays must not contain NaN or Infinity"));
    }
    Ok(())
}

/// sqrt(a·b) in one rounding where it does not overflow (so parallel vectors give exactly ±1).
fn norm_product(a: f64, b: f64) -> f64 {
    let p = a * b;
    if p.is_finite() && p > 0.0 { p.sqrt() } else { a.sqrt() * b.sqrt() }
}

/// Cosine of the angle between `a` and `b`, in [-1, 1].
pub fn cosine(a: &[f64], b: &[f64]) -> Result<Option<f64>> {
    check_pair(a, b)?;
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return Ok(None);
    }
    Ok(Some((dot / norm_product(na, nb)).clamp(-1.0, 1.0)))
}

/// Pearson correlation of `a` and `b`, in [-1, 1]; two-pass for numerical stability.
pub fn pearson(a: &[f64], b: &[f64]) -> Result<Option<f64>> {
    check_pair(a, b)?;
    if a.is_empty() {
        return Ok(None);
    }
    let n = a.len() as f64;
    let ma = a.iter().sum::<f64>() / n;
    let mb = b.iter().sum::<f64>() / n;
    let (mut cov, mut va, mut vb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (x - ma, y - mb);
        cov += dx * dy;
        va += dx * dx;
        vb += dy * dy;
    }
    if va == 0.0 || vb == 0.0 {
        return Ok(None);
    }
    Ok(Some((cov / norm_product(va, vb)).clamp(-1.0, 1.0)))
}

/// Jaccard index |A ∩ B| / |A ∪ B| of two sets given as id lists (duplicates ignored).
pub fn jaccard(a: &[i64], b: &[i64]) -> Option<f64> {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_unstable();
    a.dedup();
    b.sort_unstable();
    b.dedup();
    if a.is_empty() && b.is_empty() {
        return None;
    }
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    Some(common as f64 / (a.len() + b.len() - common) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ErrorKind;

    fn close(x: Option<f64>, want: f64) {
        let x = x.expect("defined");
        assert!((x - want).abs() < 1e-12, "{x} != {want}");
    }

    #[test]
    fn cosine_hand_computed() {
        // (1,2,3)·(4,5,6) = 32; |a| = sqrt(14), |b| = sqrt(77)
        close(cosine(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap(), 32.0 / (14f64.sqrt() * 77f64.sqrt()));
        close(cosine(&[1.0, 0.0], &[0.0, 1.0]).unwrap(), 0.0);
        close(cosine(&[1.0, 1.0], &[-2.0, -2.0]).unwrap(), -1.0);
    }

    #[test]
    fn pearson_hand_computed() {
        close(pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]).unwrap(), 1.0);
        close(pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap(), -1.0);
        // means 2.5 and 3; cov = 1.5+0.5+0.5+... computed by hand: x-dev (-1.5,-.5,.5,1.5), y (1,2,5,4) dev (-2,-1,2,1)
        // cov = 3+0.5+1+1.5 = 6; va = 5; vb = 10 -> 6/sqrt(50)
        close(pearson(&[1.0, 2.0, 3.0, 4.0], &[1.0, 2.0, 5.0, 4.0]).unwrap(), 6.0 / 50f64.sqrt());
    }

    #[test]
    fn undefined_cases_are_none() {
        assert_eq!(cosine(&[], &[]).unwrap(), None);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 2.0]).unwrap(), None);
        assert_eq!(pearson(&[], &[]).unwrap(), None);
        assert_eq!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).unwrap(), None);
        assert_eq!(pearson(&[5.0], &[3.0]).unwrap(), None);
        assert_eq!(jaccard(&[], &[]), None);
    }

    #[test]
    fn bad_input_is_an_error() {
        let e = cosine(&[1.0], &[1.0, 2.0]).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParameter);
        assert!(e.message.contains("same length"));
        assert_eq!(pearson(&[f64::NAN, 1.0], &[1.0, 2.0]).unwrap_err().kind, ErrorKind::InvalidParameter);
        assert_eq!(cosine(&[f64::INFINITY], &[1.0]).unwrap_err().kind, ErrorKind::InvalidParameter);
    }

    #[test]
    fn jaccard_sets() {
        close(jaccard(&[1, 2, 3], &[2, 3, 4]), 0.5);
        close(jaccard(&[1, 1, 2], &[2, 2]), 0.5);
        close(jaccard(&[1], &[]), 0.0);
        close(jaccard(&[7, 8], &[8, 7]), 1.0);
    }
}
