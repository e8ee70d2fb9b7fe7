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
fn dot64_with<const FMA: bool>(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f64; 32];
    let mut ca = a.chunks_exact(32);
    let mut cb = b.chunks_exact(32);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..32 {
            acc[l] = if FMA { x[l].mul_add(y[l], acc[l]) } else { x[l] * y[l] + acc[l] };
        }
    }
    let mut s = 0f64;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y;
    }
    let mut part = [0f64; 8];
    for l in 0..32 {
        part[l % 8] += acc[l];
    }
    s + part.iter().sum::<f64>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn dot64_avx512(a: &[f64], b: &[f64]) -> f64 {
    dot64_with::<true>(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot64_avx2(a: &[f64], b: &[f64]) -> f64 {
    dot64_with::<true>(a, b)
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

/// a · b in f64 with the widest fused multiply-adds the CPU has (for long vectors: the call
/// is not inlined).
pub fn dot64(a: &[f64], b: &[f64]) -> f64 {
    match simd() {
        // SAFETY: simd() checked the CPU features.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { dot64_avx512(a, b) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2Fma => unsafe { dot64_avx2(a, b) },
        _ => dot64_with::<false>(a, b),
    }
}

#[inline(always)]
fn dot4_with<const FMA: bool>(a: &[f64], b: [&[f64]; 4]) -> [f64; 4] {
    let n = b.iter().fold(a.len(), |m, x| m.min(x.len()));
    let mut acc = [[0f64; 8]; 4];
    let chunks = n / 8;
    for c in 0..chunks {
        let x = &a[c * 8..c * 8 + 8];
        for t in 0..4 {
            let y = &b[t][c * 8..c * 8 + 8];
            for l in 0..8 {
                acc[t][l] = if FMA { x[l].mul_add(y[l], acc[t][l]) } else { x[l] * y[l] + acc[t][l] };
            }
        }
    }
    let mut out = [0f64; 4];
    for t in 0..4 {
        out[t] = acc[t].iter().sum::<f64>() + (chunks * 8..n).map(|i| a[i] * b[t][i]).sum::<f64>();
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn dot4_avx512(a: &[f64], b: [&[f64]; 4]) -> [f64; 4] {
    dot4_with::<true>(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_avx2(a: &[f64], b: [&[f64]; 4]) -> [f64; 4] {
    dot4_with::<true>(a, b)
}

/// Four dot products sharing `a` (over the shortest length): one pass over `a` for four results,
/// which is what makes the blocked inverse below four times lighter on memory.
pub fn dot4(a: &[f64], b: [&[f64]; 4]) -> [f64; 4] {
    match simd() {
        // SAFETY: simd() checked the CPU features.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { dot4_avx512(a, b) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2Fma => unsafe { dot4_avx2(a, b) },
        _ => dot4_with::<false>(a, b),
    }
}

/// Invert a symmetric positive definite n×n matrix (row-major, f64) in place: Cholesky A = LLᵀ
/// four columns at a time (rows below the block in parallel), X = L⁻¹ four columns at a time in
/// parallel, then A⁻¹ = XᵀX four rows at a time in parallel — each row of the streamed operand
/// serves four results. About (2/3)n³ multiply-adds. Returns false, leaving `a` undefined, when A
/// is not positive definite or `check` (called between blocks on the calling thread, for
/// cancel) says stop.
/// `scratch` is an n×n work buffer (the caller reserves it, so running out of memory is its
/// error to report, not an abort here).
pub fn invert_spd(a: &mut [f64], n: usize, scratch: &mut [f64], pool: &rayon::ThreadPool, check: &mut dyn FnMut(usize, usize) -> bool) -> bool {
    // Cholesky: the lower triangle of `a` becomes L.
    let mut j0 = 0;
    while j0 < n {
        let w = (n - j0).min(4);
        // The diagonal block, row by row.
        for j in j0..j0 + w {
            let (done, rest) = a.split_at_mut(j * n);
            let row = &mut rest[..n];
            for c in j0..=j {
                let other = if c == j { &row[..j] } else { &done[c * n..c * n + c] };
                let s = row[c] - dot64(&row[..c], other);
                if c == j {
                    if !(s > 0.0 && s.is_finite()) {
                        return false;
                    }
                    row[j] = s.sqrt();
                } else {
                    row[c] = s / done[c * n + c];
                }
            }
        }
        // Rows below the block: four prefix dots at once, then the small triangle.
        let (done, rest) = a.split_at_mut((j0 + w) * n);
        let block: Vec<&[f64]> = (0..4).map(|t| &done[(j0 + t.min(w - 1)) * n..(j0 + t.min(w - 1)) * n + n]).collect();
        pool.install(|| {
            rest.par_chunks_mut(n).for_each(|row| {
                let d = dot4(&row[..j0], [&block[0][..j0], &block[1][..j0], &block[2][..j0], &block[3][..j0]]);
                for t in 0..w {
                    let c = j0 + t;
                    let mut s = row[c] - d[t];
                    for u in 0..t {
                        s -= row[j0 + u] * block[t][j0 + u];
                    }
                    row[c] = s / block[t][c];
                }
            })
        });
        j0 += w;
        if j0 % 64 == 0 && j0 < n && !check(j0, 3 * n) {
            return false;
        }
    }
    // X = L⁻¹, stored transposed: xt row c holds column c of X (zero before c). Columns in
    // blocks of four, in lockstep down the rows: row i of L serves all four.
    let xt = &mut scratch[..n * n];
    xt.fill(0.0);
    {
        let l = &*a;
        pool.install(|| {
            xt.par_chunks_mut(4 * n).enumerate().for_each(|(blk, cols)| {
                let c0 = blk * 4;
                let w = cols.len() / n;
                for t in 0..w {
                    cols[t * n + c0 + t] = 1.0 / l[(c0 + t) * n + c0 + t];
                }
                for i in c0 + 1..n {
                    let row = &l[i * n + c0..i * n + i];
                    let x: Vec<&[f64]> = (0..4).map(|t| &cols[t.min(w - 1) * n + c0..t.min(w - 1) * n + i]).collect();
                    let d = dot4(row, [x[0], x[1], x[2], x[3]]);
                    for t in 0..w {
                        if i > c0 + t {
                            cols[t * n + i] = -d[t] / l[i * n + i];
                        }
                    }
                }
            })
        });
    }
    if !check(2 * n, 3 * n) {
        return false;
    }
    // A⁻¹[r][c] = Σ_k X[k][r] X[k][c] = xt[r] · xt[c] over k ≥ max(r, c): the upper part, four
    // rows r against each xt[c], then mirrored.
    pool.install(|| {
        a.par_chunks_mut(4 * n).enumerate().for_each(|(blk, out)| {
            let r0 = blk * 4;
            let w = out.len() / n;
            for c in r0..n {
                let m = c; // k ≥ c ≥ r
                let rows: Vec<&[f64]> = (0..4).map(|t| &xt[(r0 + t.min(w - 1)) * n + m..(r0 + t.min(w - 1) + 1) * n]).collect();
                let d = dot4(&xt[c * n + m..(c + 1) * n], [rows[0], rows[1], rows[2], rows[3]]);
                for t in 0..w {
                    if c >= r0 + t {
                        out[t * n + c] = d[t];
                    }
                }
            }
        })
    });
    for r in 0..n {
        for c in 0..r {
            a[r * n + c] = a[c * n + r];
        }
    }
    check(3 * n, 3 * n)
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
        let mut inv = a.clone();
        assert!(invert_spd(&mut inv, n, &mut vec![0.0; n * n], &pool, &mut |_, _| true));
        for r in 0..n {
            for c in 0..n {
                let v: f64 = (0..n).map(|k| a[r * n + k] * inv[k * n + c]).sum();
                assert!((v - if r == c { 1.0 } else { 0.0 }).abs() < 1e-8, "({r},{c}) = {v}");
            }
        }
        let mut indefinite = vec![1.0, 2.0, 2.0, 1.0];
        assert!(!invert_spd(&mut indefinite, 2, &mut vec![0.0; 4], &pool, &mut |_, _| true));
        let mut cancelled = a.clone();
        assert!(!invert_spd(&mut cancelled, n, &mut vec![0.0; n * n], &pool, &mut |_, _| false));
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
