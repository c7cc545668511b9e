//! The input layer's two products with a batch of images, exploiting that ~80 % of MNIST pixels
//! are zero (Keras multiplies them all).
//!
//! - forward: `z_i = b + Σ_k x_ik · W[:, k]` over the non-zero pixels `k` of image `i` (CSR);
//! - weight gradient: `dW[:, k] = Σ_i x_ik · dh_i` over the images `i` where pixel `k` is non-zero
//!   (CSC).
//!
//! Both are column AXPYs over contiguous 512-float columns of nalgebra's column-major storage. Each
//! output column is summed by one thread in a fixed order, so results do not depend on how the work
//! is split: the same seed gives the same weights, whatever the thread count.

use rayon::prelude::*;

use crate::kernels::axpy_sum;

/// Rows of a sparse matrix (CSR): for each row, its non-zero columns and their values.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseRows {
    columns: usize,
    /// `start[r]..start[r + 1]` indexes `index` and `value` for row `r`.
    start: Vec<usize>,
    index: Vec<u32>,
    value: Vec<f32>,
}

impl SparseRows {
    /// Keeps the non-zero entries of dense rows of `columns` values each, mapped through `scale`.
    pub fn from_dense<'a, T: Copy + PartialEq + Default + 'a>(
        columns: usize,
        rows: impl IntoIterator<Item = &'a [T]> + Clone,
        scale: impl Fn(T) -> f32,
    ) -> Self {
        let mut sparse = Self::empty(columns);
        let non_zeros = rows
            .clone()
            .into_iter()
            .map(|row| row.iter().filter(|&&v| v != T::default()).count())
            .sum();
        sparse.index.reserve_exact(non_zeros);
        sparse.value.reserve_exact(non_zeros);
        for row in rows {
            debug_assert_eq!(row.len(), columns);
            for (k, &v) in row.iter().enumerate() {
                if v != T::default() {
                    sparse.index.push(k as u32);
                    sparse.value.push(scale(v));
                }
            }
            sparse.start.push(sparse.index.len());
        }
        sparse
    }

    /// [`Self::from_dense`] over `rows` of a flat slice, split across threads.
    pub fn from_dense_parallel<T: Copy + PartialEq + Default + Sync>(
        columns: usize,
        values: &[T],
        scale: impl Fn(T) -> f32 + Sync,
    ) -> Self {
        const ROWS_PER_TASK: usize = 4096;
        let parts: Vec<Self> = values
            .par_chunks(columns * ROWS_PER_TASK)
            .map(|part| Self::from_dense(columns, part.chunks_exact(columns), &scale))
            .collect();
        let mut whole = Self::empty(columns);
        for part in parts {
            let offset = whole.index.len();
            whole
                .start
                .extend(part.start[1..].iter().map(|s| s + offset));
            whole.index.extend_from_slice(&part.index);
            whole.value.extend_from_slice(&part.value);
        }
        whole
    }

    fn empty(columns: usize) -> Self {
        Self {
            columns,
            start: vec![0],
            index: Vec::new(),
            value: Vec::new(),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.start.len() - 1
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Width of a dense row.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Non-zero entries in all.
    pub fn non_zeros(&self) -> usize {
        self.index.len()
    }

    /// Row `r` as (column, value) pairs.
    pub fn row(&self, r: usize) -> impl Iterator<Item = (usize, f32)> + Clone + '_ {
        let range = self.start[r]..self.start[r + 1];
        self.index[range.clone()]
            .iter()
            .map(|&k| k as usize)
            .zip(self.value[range].iter().copied())
    }

    /// The rows at `rows`, in that order.
    pub fn gather(&self, rows: &[usize]) -> Self {
        let mut out = Self::empty(self.columns);
        for &r in rows {
            let range = self.start[r]..self.start[r + 1];
            out.index.extend_from_slice(&self.index[range.clone()]);
            out.value.extend_from_slice(&self.value[range]);
            out.start.push(out.index.len());
        }
        out
    }

    /// The same matrix by columns (CSC); rows stay in order within each column.
    pub fn transpose(&self) -> Self {
        let mut start = vec![0usize; self.columns + 1];
        for &k in &self.index {
            start[k as usize + 1] += 1;
        }
        for k in 0..self.columns {
            start[k + 1] += start[k];
        }
        let mut next = start.clone();
        let mut index = vec![0u32; self.index.len()];
        let mut value = vec![0.0f32; self.index.len()];
        for r in 0..self.len() {
            for (k, v) in self.row(r) {
                let slot = next[k];
                next[k] += 1;
                index[slot] = r as u32;
                value[slot] = v;
            }
        }
        Self {
            columns: self.len(),
            start,
            index,
            value,
        }
    }
}

/// A batch of network inputs, one row per image, kept both by rows and by columns.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseBatch {
    rows: SparseRows,
    columns: SparseRows,
}

impl SparseBatch {
    /// A batch of the given images.
    pub fn new(rows: SparseRows) -> Self {
        let columns = rows.transpose();
        Self { rows, columns }
    }

    /// Images in the batch.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the batch has no images.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Values per image.
    pub fn inputs(&self) -> usize {
        self.rows.columns()
    }

    /// The images, row by row.
    pub fn rows(&self) -> &SparseRows {
        &self.rows
    }

    /// `z[:, i] = bias + W · x_i` for every image, `W` column-major `rows × inputs`, `z`
    /// column-major `rows × len`.
    pub fn times_weights(&self, w: &[f32], bias: &[f32], z: &mut [f32]) {
        let rows = bias.len();
        z.par_chunks_mut(rows).enumerate().for_each(|(i, out)| {
            out.copy_from_slice(bias);
            let terms = self.rows.row(i).map(|(k, v)| (v, &w[k * rows..][..rows]));
            axpy_sum(out, terms);
        });
    }

    /// `dw[:, k] = Σ_i x_ik · dh[:, i]`: the gradient of a weight matrix from the gradient `dh` of
    /// its outputs, both column-major with `rows` rows.
    pub fn outer_gradient(&self, dh: &[f32], rows: usize, dw: &mut [f32]) {
        dw.par_chunks_mut(rows).enumerate().for_each(|(k, out)| {
            out.fill(0.0);
            let terms = self
                .columns
                .row(k)
                .map(|(i, v)| (v, &dh[i * rows..][..rows]));
            axpy_sum(out, terms);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_match_dense_arithmetic() {
        let images: [[u8; 4]; 3] = [[0, 255, 0, 51], [0, 0, 0, 0], [102, 0, 0, 255]];
        let rows =
            SparseRows::from_dense(4, images.iter().map(|i| &i[..]), |v| f32::from(v) / 255.0);
        assert_eq!(rows.non_zeros(), 4);
        let batch = SparseBatch::new(rows.gather(&[0, 1, 2]));
        let rows = 2;
        let w: Vec<f32> = (0..8).map(|v| v as f32 - 3.0).collect(); // 2 × 4, column-major
        let bias = [0.5, -0.5];
        let mut z = vec![0.0; rows * 3];
        batch.times_weights(&w, &bias, &mut z);
        for (i, image) in images.iter().enumerate() {
            for r in 0..rows {
                let dense: f32 = bias[r]
                    + (0..4)
                        .map(|k| w[k * rows + r] * f32::from(image[k]) / 255.0)
                        .sum::<f32>();
                assert!((z[i * rows + r] - dense).abs() < 1e-6, "z[{r},{i}]");
            }
        }
        let dh: Vec<f32> = (0..6).map(|v| v as f32 * 0.25 - 0.5).collect();
        let mut dw = vec![9.0; 8];
        batch.outer_gradient(&dh, rows, &mut dw);
        for k in 0..4 {
            for r in 0..rows {
                let dense: f32 = (0..3)
                    .map(|i| dh[i * rows + r] * f32::from(images[i][k]) / 255.0)
                    .sum();
                assert!((dw[k * rows + r] - dense).abs() < 1e-6, "dw[{r},{k}]");
            }
        }
    }
}
