//! Small dense linear algebra for the factor models: vector kernels written so the compiler
//! vectorises them (fused multiply-adds where the caller is compiled for FMA), YᵀY, a Cholesky
//! solve for k×k systems and a symmetric eigensolver (cyclic Jacobi). No system BLAS is needed.

use rayon::prelude::*;

/// a·b + c: fused when `FMA` (only for code compiled with the `fma` target feature; elsewhere
/// `mul_add` would be a slow library call).
#[inline(always)]
pub fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// a · b, with 32 independent partial sums so the loop vectorises (4 AVX or 8 SSE registers)
/// and the additions do not wait on each other. Always inlined, so that callers compiled with
/// wider vector features (see `als`) get the wide version.
#[inline(always)]
pub fn dot_with<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 32];
    let mut ca = a.chunks_exact(32);
    let mut cb = b.chunks_exact(32);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..32 {
            acc[l] = madd::<FMA>(x[l], y[l], acc[l]);
        }
    }
    let mut s = 0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s = madd::<FMA>(*x, *y, s);
    }
    let mut half = [0f32; 8];
    for l in 0..32 {
        half[l % 8] += acc[l];
    }
    s + half.iter().sum::<f32>()
}

/// y += a·x
#[inline(always)]
pub fn axpy_with<const FMA: bool>(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi = madd::<FMA>(a, *xi, *yi);
    }
}

#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_with::<false>(a, b)
}

#[inline(always)]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    axpy_with::<false>(a, x, y)
}

pub fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

/// YᵀY (k×k, row-major, f32) of a row-major n×k matrix, summed in parallel over row blocks.
pub fn gram(y: &[f32], k: usize, pool: &rayon::ThreadPool) -> Vec<f32> {
    let rows = y.len() / k.max(1);
    let block = 2048;
    // Blocks in parallel, summed in block order: the result does not depend on scheduling.
    let blocks: Vec<Vec<f64>> = pool.install(|| {
        (0..rows.div_ceil(block))
            .into_par_iter()
            .map(|b| {
                let mut g = vec![0f64; k * k];
                for r in b * block..((b + 1) * block).min(rows) {
                    let v = &y[r * k..(r + 1) * k];
                    for i in 0..k {
                        let vi = v[i] as f64;
                        let row = &mut g[i * k..(i + 1) * k];
                        for j in i..k {
                            row[j] += vi * v[j] as f64;
                        }
                    }
                }
                g
            })
            .collect()
    });
    let mut g = vec![0f64; k * k];
    blocks.iter().for_each(|b| g.iter_mut().zip(b).for_each(|(x, y)| *x += y));
    let mut out = vec![0f32; k * k];
    for i in 0..k {
        for j in i..k {
            out[i * k + j] = g[i * k + j] as f32;
            out[j * k + i] = g[i * k + j] as f32;
        }
    }
    out
}

/// Solve A x = b for a symmetric positive definite A (n×n, row-major, f64) by Cholesky.
/// Returns None when A is not positive definite.
pub fn cholesky_solve(a: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    let mut l = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = a[i * n + j];
            for p in 0..j {
                s -= l[i * n + p] * l[j * n + p];
            }
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    let mut y = vec![0f64; n];
    for i in 0..n {
        let mut s = b[i];
        for p in 0..i {
            s -= l[i * n + p] * y[p];
        }
        y[i] = s / l[i * n + i];
    }
    let mut x = vec![0f64; n];
    for i in (0..n).rev() {
        let mut s = y[i];
        for p in i + 1..n {
            s -= l[p * n + i] * x[p];
        }
        x[i] = s / l[i * n + i];
    }
    Some(x)
}

/// Eigen-decomposition of a symmetric n×n matrix (row-major, f64) by cyclic Jacobi rotations.
/// Returns eigenvalues in descending order and the matching eigenvectors as columns (row-major n×n).
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut m = a.to_vec();
    let mut v = vec![0f64; n * n];
    (0..n).for_each(|i| v[i * n + i] = 1.0);
    for _sweep in 0..100 {
        let off: f64 = (0..n).flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j))).map(|(i, j)| m[i * n + j].powi(2)).sum();
        let scale: f64 = (0..n).map(|i| m[i * n + i].powi(2)).sum::<f64>().max(f64::MIN_POSITIVE);
        if off <= 1e-30 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (m[q * n + q] - m[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (mkp, mkq) = (m[k * n + p], m[k * n + q]);
                    m[k * n + p] = c * mkp - s * mkq;
                    m[k * n + q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m[p * n + k], m[q * n + k]);
                    m[p * n + k] = c * mpk - s * mqk;
                    m[q * n + k] = s * mpk + c * mqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| m[j * n + j].total_cmp(&m[i * n + i]));
    let values = order.iter().map(|&i| m[i * n + i]).collect();
    let mut vectors = vec![0f64; n * n];
    for (c, &i) in order.iter().enumerate() {
        for r in 0..n {
            vectors[r * n + c] = v[r * n + i];
        }
    }
    (values, vectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_and_axpy() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let b = vec![2f32; 19];
        assert_eq!(dot(&a, &b), 2.0 * (18.0 * 19.0 / 2.0));
        let mut y = vec![1f32; 3];
        axpy(2.0, &[1.0, 2.0, 3.0], &mut y);
        assert_eq!(y, vec![3.0, 5.0, 7.0]);
    }

    #[test]
    fn cholesky_solves_spd_and_refuses_indefinite() {
        let a = [4.0, 2.0, 2.0, 3.0];
        let x = cholesky_solve(&a, &[2.0, 1.0]).unwrap();
        assert!((4.0 * x[0] + 2.0 * x[1] - 2.0).abs() < 1e-12);
        assert!((2.0 * x[0] + 3.0 * x[1] - 1.0).abs() < 1e-12);
        assert!(cholesky_solve(&[1.0, 2.0, 2.0, 1.0], &[1.0, 1.0]).is_none());
    }

    #[test]
    fn jacobi_eigen_of_known_matrix() {
        // eigenvalues of [[2,1],[1,2]] are 3 and 1
        let (vals, vecs) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        assert!((vals[0] - 3.0).abs() < 1e-12 && (vals[1] - 1.0).abs() < 1e-12);
        assert!((vecs[0].abs() - 0.5f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn gram_matches_naive() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let y: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        let g = gram(&y, 3, &pool);
        for i in 0..3 {
            for j in 0..3 {
                let want: f32 = (0..4).map(|r| y[r * 3 + i] * y[r * 3 + j]).sum();
                assert!((g[i * 3 + j] - want).abs() < 1e-4);
            }
        }
    }
}
