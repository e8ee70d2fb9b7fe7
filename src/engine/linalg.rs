//! Dense linear algebra: vector kernels written so the compiler vectorises them (fused
//! multiply-adds where the caller is compiled for FMA), YᵀY, a Cholesky solve for k×k systems, a
//! symmetric eigensolver (cyclic Jacobi), and the SPD inverse EASE needs, on faer's blocked
//! kernels (called block by block, so cancel is checked between blocks). No system BLAS.

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

/// a · b, with 16 independent partial sums: one 512-bit register (or two 256-bit ones), which
/// LLVM keeps in vector registers; the wider, interleaved reduction this had before was split
/// into 2-lane pieces with spills. Always inlined, so that callers compiled with wider vector
/// features (see `als`) get the wide version.
#[inline(always)]
pub fn dot_with<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 16];
    let mut ca = a.chunks_exact(16);
    let mut cb = b.chunks_exact(16);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..16 {
            acc[l] = madd::<FMA>(x[l], y[l], acc[l]);
        }
    }
    let mut s = 0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s = madd::<FMA>(*x, *y, s);
    }
    let mut half = [0f32; 8];
    for l in 0..8 {
        half[l] = acc[l] + acc[l + 8];
    }
    let mut quarter = [0f32; 4];
    for l in 0..4 {
        quarter[l] = half[l] + half[l + 4];
    }
    s + (quarter[0] + quarter[2]) + (quarter[1] + quarter[3])
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

/// Cosine of two dense vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let d = norm(a) * norm(b);
    if d > 0.0 {
        dot(a, b) / d
    } else {
        0.0
    }
}

pub fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

/// The upper triangle of Σ y_r y_rᵀ over rows `rows` of a row-major matrix with k columns.
fn gram_rows(y: &[f32], k: usize, rows: std::ops::Range<usize>) -> Vec<f64> {
    let mut g = vec![0f64; k * k];
    for r in rows {
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
}

fn mirror(g: &mut [f64], k: usize) {
    for i in 0..k {
        for j in 0..i {
            g[i * k + j] = g[j * k + i];
        }
    }
}

/// YᵀY in f64 (k×k, row-major), sequentially.
pub fn gram_f64(y: &[f32], k: usize) -> Vec<f64> {
    let mut g = gram_rows(y, k, 0..y.len() / k.max(1));
    mirror(&mut g, k);
    g
}

/// YᵀY (k×k, row-major, f32) of a row-major n×k matrix, summed in f64 over row blocks in
/// parallel, the blocks added in order: the result does not depend on scheduling.
pub fn gram(y: &[f32], k: usize, pool: &rayon::ThreadPool) -> Vec<f32> {
    let rows = y.len() / k.max(1);
    let block = 2048;
    let blocks: Vec<Vec<f64>> = pool.install(|| {
        (0..rows.div_ceil(block))
            .into_par_iter()
            .map(|b| gram_rows(y, k, b * block..((b + 1) * block).min(rows)))
            .collect()
    });
    let mut g = vec![0f64; k * k];
    blocks.iter().for_each(|b| g.iter_mut().zip(b).for_each(|(x, y)| *x += y));
    mirror(&mut g, k);
    g.into_iter().map(|v| v as f32).collect()
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

/// Eigen-decomposition of a symmetric n×n matrix (row-major, f64), by faer's self-adjoint
/// eigensolver (tridiagonalisation and divide and conquer, as LAPACK's dsyevd). Returns
/// eigenvalues in descending order and the matching eigenvectors as columns (row-major n×n); a
/// matrix with non-finite entries gives zeros (no direction to keep).
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let m = faer::Mat::<f64>::from_fn(n, n, |i, j| a[i * n + j]);
    let Ok(evd) = m.self_adjoint_eigen(faer::Side::Lower) else { return (vec![0.0; n], vec![0.0; n * n]) };
    let (values, u) = (evd.S().column_vector(), evd.U());
    // faer sorts ascending; callers want the largest first.
    let values_desc: Vec<f64> = (0..n).rev().map(|c| values[c]).collect();
    let mut vectors = vec![0f64; n * n];
    for (c, src) in (0..n).rev().enumerate() {
        for r in 0..n {
            vectors[r * n + c] = u[(r, src)];
        }
    }
    (values_desc, vectors)
}

/// Which vector instructions this CPU has, detected once.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Simd {
    Portable,
    Avx2Fma,
    Avx512,
}

fn simd() -> Simd {
    static LEVEL: std::sync::OnceLock<Simd> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") {
                return Simd::Avx512;
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Simd::Avx2Fma;
            }
        }
        Simd::Portable
    })
}

#[inline(always)]
fn matvec_with<const FMA: bool>(m: &[f32], k: usize, v: &[f32], out: &mut [f32]) {
    for (row, o) in m.chunks_exact(k).zip(out.iter_mut()) {
        *o = dot_with::<FMA>(row, v);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn matvec_avx512(m: &[f32], k: usize, v: &[f32], out: &mut [f32]) {
    matvec_with::<true>(m, k, v, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn matvec_avx2(m: &[f32], k: usize, v: &[f32], out: &mut [f32]) {
    matvec_with::<true>(m, k, v, out)
}

/// out[i] = m[i·k..(i+1)·k] · v for every row of the row-major `m` (serving: every item's score
/// against one user vector), with the widest fused multiply-adds the CPU has.
pub fn matvec(m: &[f32], k: usize, v: &[f32], out: &mut [f32]) {
    if k == 0 {
        out.iter_mut().for_each(|o| *o = 0.0);
        return;
    }
    match simd() {
        // SAFETY: simd() checked the CPU features.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { matvec_avx512(m, k, v, out) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2Fma => unsafe { matvec_avx2(m, k, v, out) },
        _ => matvec_with::<false>(m, k, v, out),
    }
}


/// Columns per block of the faer-based inverse: each block is one cancel check.
const SPD_BLOCK: usize = 256;

/// Length of the work buffer `invert_spd` needs for an n×n matrix: one panel of n × block.
pub fn invert_spd_scratch_len(n: usize) -> usize {
    n.saturating_mul(SPD_BLOCK) + SPD_BLOCK * SPD_BLOCK
}

/// Invert a symmetric positive definite n×n matrix (f64; symmetric, so row- and column-major
/// are the same) in place, with faer's kernels, in three blocked sweeps over the lower triangle
/// (LAPACK's potrf, trtri and lauum, written here so that nothing n×n is allocated besides `a`):
/// a right-looking Cholesky A = LLᵀ (faer LLᵀ on each diagonal block, a triangular solve for the
/// panel below, a lower-triangular rank-b update of the rest); L⁻¹ in place, from the last block
/// of columns to the first ((L⁻¹)₂₁ = −L₂₂⁻¹ L₂₁ L₁₁⁻¹, with L₂₂⁻¹ already in place); then
/// A⁻¹ = L⁻ᵀL⁻¹ in place, one block of rows at a time (row block i needs only L's rows from i
/// down); the upper triangle is mirrored from the lower one last. About n³/2 multiply-adds
/// (numpy's inv: ~(8/3)n³). `check` is called on the calling thread between blocks (for cancel);
/// false from it, or a matrix that is not positive definite, returns false and leaves `a`
/// undefined. `scratch` is the work buffer, at least `invert_spd_scratch_len(n)` long (the caller
/// reserves it, so running out of memory is its error to report, not an abort here).
pub fn invert_spd(a: &mut [f64], n: usize, scratch: &mut [f64], pool: &rayon::ThreadPool, check: &mut dyn FnMut(usize, usize) -> bool) -> bool {
    invert_spd_blocked(a, n, SPD_BLOCK, scratch, pool, check)
}

fn invert_spd_blocked(a: &mut [f64], n: usize, block: usize, scratch: &mut [f64], pool: &rayon::ThreadPool, check: &mut dyn FnMut(usize, usize) -> bool) -> bool {
    use faer::linalg::matmul::matmul;
    use faer::linalg::matmul::triangular::{matmul as tri_matmul, BlockStructure};
    use faer::linalg::triangular_inverse::invert_lower_triangular;
    use faer::linalg::triangular_solve::{solve_lower_triangular_in_place, solve_upper_triangular_in_place};
    use faer::reborrow::{Reborrow, ReborrowMut};
    use faer::{Accum, MatMut, Par, Side};
    use BlockStructure::{Rectangular, TriangularLower, TriangularUpper};
    if n == 0 {
        return true;
    }
    let blocks = n.div_ceil(block);
    let total = 3 * blocks;
    let par = Par::rayon(pool.current_num_threads());
    let (panel, small) = scratch[..n * block + block * block].split_at_mut(n * block);
    let mut m = MatMut::from_column_major_slice_mut(&mut a[..n * n], n, n);
    // 1. A = LLᵀ, L in the lower triangle (the strict upper one keeps A's values, never read).
    for (step, k0) in (0..n).step_by(block).enumerate() {
        let b = block.min(n - k0);
        let ok = pool.install(|| {
            let (mut a11, _, mut a21, mut a22) = m.rb_mut().submatrix_mut(k0, k0, n - k0, n - k0).split_at_mut(b, b);
            let Ok(llt) = a11.rb().llt(Side::Lower) else { return false };
            a11.copy_from(llt.L());
            if b < n - k0 {
                // A21 ← A21 L11⁻ᵀ, i.e. A21ᵀ ← L11⁻¹ A21ᵀ; then A22 −= A21 A21ᵀ (lower half).
                solve_lower_triangular_in_place(a11.rb(), a21.rb_mut().transpose_mut(), par);
                tri_matmul(a22.rb_mut(), TriangularLower, Accum::Add, a21.rb(), Rectangular, a21.rb().transpose(), Rectangular, -1.0, par);
            }
            true
        });
        if !ok || !check(step + 1, total) {
            return false;
        }
    }
    // 2. L ← L⁻¹, from the last block of columns to the first.
    let starts: Vec<usize> = (0..n).step_by(block).collect();
    for (step, &j) in starts.iter().rev().enumerate() {
        let b = block.min(n - j);
        let rest = n - j - b;
        pool.install(|| {
            let (mut a11, _, mut a21, a22) = m.rb_mut().submatrix_mut(j, j, n - j, n - j).split_at_mut(b, b);
            if rest > 0 {
                // A21 ← −L22⁻¹ A21 L11⁻¹ (L22⁻¹ is in place already; A11 still holds L11).
                let mut t = MatMut::from_column_major_slice_mut(&mut panel[..rest * b], rest, b);
                t.copy_from(a21.rb());
                tri_matmul(a21.rb_mut(), Rectangular, Accum::Replace, a22.rb(), TriangularLower, t.rb(), Rectangular, -1.0, par);
                solve_upper_triangular_in_place(a11.rb().transpose(), a21.rb_mut().transpose_mut(), par);
            }
            let mut inv = MatMut::from_column_major_slice_mut(&mut small[..b * b], b, b);
            invert_lower_triangular(inv.rb_mut(), a11.rb(), par);
            copy_lower(a11.rb_mut(), inv.rb());
        });
        if !check(blocks + step + 1, total) {
            return false;
        }
    }
    // 3. A⁻¹ = L⁻ᵀL⁻¹ (lower triangle), one block of rows at a time, top down: row block i of
    // the product reads L⁻¹ from row i down only, which later blocks have not overwritten yet.
    for (step, i) in (0..n).step_by(block).enumerate() {
        let b = block.min(n - i);
        pool.install(|| {
            let (mut r, mut a11, a20, a21) = m.rb_mut().submatrix_mut(i, 0, n - i, i + b).split_at_mut(b, i);
            if i > 0 {
                // R ← L11ᵀ R, then R += L21ᵀ L20.
                let mut t = MatMut::from_column_major_slice_mut(&mut panel[..b * i], b, i);
                t.copy_from(r.rb());
                tri_matmul(r.rb_mut(), Rectangular, Accum::Replace, a11.rb().transpose(), TriangularUpper, t.rb(), Rectangular, 1.0, par);
                if i + b < n {
                    matmul(r.rb_mut(), Accum::Add, a21.rb().transpose(), a20.rb(), 1.0, par);
                }
            }
            // A11 ← L11ᵀ L11 + L21ᵀ L21 (lower half).
            let mut l11 = MatMut::from_column_major_slice_mut(&mut small[..b * b], b, b);
            l11.fill(0.0);
            copy_lower(l11.rb_mut(), a11.rb());
            tri_matmul(a11.rb_mut(), TriangularLower, Accum::Replace, l11.rb().transpose(), TriangularUpper, l11.rb(), TriangularLower, 1.0, par);
            if i + b < n {
                tri_matmul(a11.rb_mut(), TriangularLower, Accum::Add, a21.rb().transpose(), Rectangular, a21.rb(), Rectangular, 1.0, par);
            }
        });
        if !check(2 * blocks + step + 1, total) {
            return false;
        }
    }
    mirror_lower(a, n);
    true
}

/// The lower triangle (diagonal included) of `src` into `dst`.
fn copy_lower(mut dst: faer::MatMut<'_, f64>, src: faer::MatRef<'_, f64>) {
    for c in 0..src.ncols() {
        for r in c..src.nrows() {
            dst[(r, c)] = src[(r, c)];
        }
    }
}

/// Fill the strict upper triangle of a column-major n×n matrix from its lower one (a symmetric
/// matrix of which only the lower half was computed), in cache-sized tiles.
pub fn mirror_lower(a: &mut [f64], n: usize) {
    const TILE: usize = 64;
    for j0 in (0..n).step_by(TILE) {
        for i0 in (0..=j0).step_by(TILE) {
            for j in j0..(j0 + TILE).min(n) {
                for i in i0..(i0 + TILE).min(j) {
                    // (i, j) with i < j: column j, row i, from (j, i).
                    a[j * n + i] = a[i * n + j];
                }
            }
        }
    }
}


#[cfg(test)]
mod tests {
    #[test]
    fn matvec_matches_row_dots() {
        let k = 67;
        let m: Vec<f32> = (0..5 * k).map(|x| ((x * 37 % 101) as f32 - 50.0) / 25.0).collect();
        let v: Vec<f32> = (0..k).map(|x| ((x * 13 % 29) as f32 - 14.0) / 7.0).collect();
        let mut out = vec![0f32; 5];
        matvec(&m, k, &v, &mut out);
        for (r, o) in out.iter().enumerate() {
            let want: f64 = (0..k).map(|c| m[r * k + c] as f64 * v[c] as f64).sum();
            assert!((*o as f64 - want).abs() < 1e-3, "{o} vs {want}");
        }
    }

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
    fn spd_inverse_times_matrix_is_identity() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let n = 70;
        // A = MᵀM + I for a deterministic M: symmetric positive definite.
        let m: Vec<f64> = (0..n * n).map(|i| ((i * 37 % 101) as f64 - 50.0) / 50.0).collect();
        let mut a = vec![0f64; n * n];
        for r in 0..n {
            for c in 0..n {
                a[r * n + c] = (0..n).map(|k| m[k * n + r] * m[k * n + c]).sum::<f64>() + if r == c { 1.0 } else { 0.0 };
            }
        }
        // One block, blocks that divide n, and a ragged last block; every block boundary of the
        // three sweeps is crossed in the smaller ones.
        for block in [256, 16, 7, 1] {
            let mut inv = a.clone();
            let mut scratch = vec![0.0; n * block + block * block];
            let mut checks = 0;
            assert!(invert_spd_blocked(&mut inv, n, block, &mut scratch, &pool, &mut |_, _| {
                checks += 1;
                true
            }));
            assert_eq!(checks, 3 * n.div_ceil(block));
            for r in 0..n {
                for c in 0..n {
                    let v: f64 = (0..n).map(|k| a[r * n + k] * inv[k * n + c]).sum();
                    assert!((v - if r == c { 1.0 } else { 0.0 }).abs() < 1e-8, "block {block}: ({r},{c}) = {v}");
                    assert_eq!(inv[r * n + c], inv[c * n + r], "block {block}: not symmetric at ({r},{c})");
                }
            }
        }
        let mut indefinite = vec![1.0, 2.0, 2.0, 1.0];
        assert!(!invert_spd(&mut indefinite, 2, &mut vec![0.0; invert_spd_scratch_len(2)], &pool, &mut |_, _| true));
        let mut cancelled = a.clone();
        assert!(!invert_spd(&mut cancelled, n, &mut vec![0.0; invert_spd_scratch_len(n)], &pool, &mut |_, _| false));
    }

    #[test]
    fn symmetric_eigen_of_known_and_random_matrices() {
        // eigenvalues of [[2,1],[1,2]] are 3 and 1
        let (vals, vecs) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        assert!((vals[0] - 3.0).abs() < 1e-12 && (vals[1] - 1.0).abs() < 1e-12);
        assert!((vecs[0].abs() - 0.5f64.sqrt()).abs() < 1e-12);
        // A random symmetric 30x30: A v = lambda v, V orthonormal, values descending.
        let n = 30;
        let mut rng = crate::engine::rng::Rng::new(3);
        let mut a = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..=i {
                let x = rng.next_f64() - 0.5;
                a[i * n + j] = x;
                a[j * n + i] = x;
            }
        }
        let (vals, v) = symmetric_eigen(&a, n);
        assert!(vals.windows(2).all(|w| w[0] >= w[1]));
        for c in 0..n {
            for r in 0..n {
                let av: f64 = (0..n).map(|k| a[r * n + k] * v[k * n + c]).sum();
                assert!((av - vals[c] * v[r * n + c]).abs() < 1e-10, "column {c}");
            }
            for d in 0..n {
                let dot: f64 = (0..n).map(|r| v[r * n + c] * v[r * n + d]).sum();
                assert!((dot - if c == d { 1.0 } else { 0.0 }).abs() < 1e-10);
            }
        }
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
