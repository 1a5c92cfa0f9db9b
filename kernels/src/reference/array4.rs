//! A 4-D array of f64 in C (row-major) order: the NumPy `ndarray` of the notebook.

/// A dense 4-D array; `data[((i0 * s1 + i1) * s2 + i2) * s3 + i3]` holds `[i0, i1, i2, i3]`.
///
/// The reference functions read the axes as NHWC, like the notebook.
#[derive(Clone, Debug, PartialEq)]
pub struct Array4 {
    pub shape: [usize; 4],
    pub data: Vec<f64>,
}

impl Array4 {
    /// An array of zeros, like `np.zeros(shape)`.
    pub fn zeros(shape: [usize; 4]) -> Array4 {
        Array4 {
            shape,
            data: vec![0.0; shape.iter().product()],
        }
    }

    /// Wraps C-ordered values, like `np.array(data).reshape(shape)`.
    ///
    /// # Panics
    ///
    /// If `data.len()` is not the product of `shape` (test-side code: a wrong length is
    /// a bug in the test, reported loudly).
    pub fn from_vec(shape: [usize; 4], data: Vec<f64>) -> Array4 {
        assert_eq!(
            data.len(),
            shape.iter().product::<usize>(),
            "Array4::from_vec: {} values do not fill shape {shape:?}",
            data.len()
        );
        Array4 { shape, data }
    }

    /// The element at `index`.
    ///
    /// # Panics
    ///
    /// If any coordinate is out of its axis (checked per axis, so a wrong index never
    /// silently lands on another element).
    pub fn get(&self, index: [usize; 4]) -> f64 {
        self.data[self.offset(index)]
    }

    /// Overwrites the element at `index`; panics like [`Array4::get`].
    pub fn set(&mut self, index: [usize; 4], value: f64) {
        let offset = self.offset(index);
        self.data[offset] = value;
    }

    /// `self[index] += value`: how backward passes gather gradient from several outputs.
    pub(super) fn accumulate(&mut self, index: [usize; 4], value: f64) {
        let offset = self.offset(index);
        self.data[offset] += value;
    }

    /// Builds the NHWC array holding the same images as the NCHW buffer `data`.
    ///
    /// `shape_nchw` is `[n, c, h, w]`; the result has shape `[n, h, w, c]`.
    ///
    /// # Panics
    ///
    /// If `data.len()` is not the product of `shape_nchw`.
    pub fn from_nchw(shape_nchw: [usize; 4], data: &[f64]) -> Array4 {
        let [n, c, h, w] = shape_nchw;
        assert_eq!(
            data.len(),
            n * c * h * w,
            "Array4::from_nchw: {} values do not fill NCHW shape {shape_nchw:?}",
            data.len()
        );
        let mut out = Array4::zeros([n, h, w, c]);
        for i in 0..n {
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        out.set([i, y, x, ch], data[((i * c + ch) * h + y) * w + x]);
                    }
                }
            }
        }
        out
    }

    /// The same images as an NCHW buffer (shape `[n, c, h, w]`), the fast kernels' layout.
    pub fn to_nchw(&self) -> Vec<f64> {
        let [n, h, w, c] = self.shape;
        let mut out = Vec::with_capacity(self.data.len());
        for i in 0..n {
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        out.push(self.get([i, y, x, ch]));
                    }
                }
            }
        }
        out
    }

    /// The mean of all elements, like `np.mean` (NaN for an empty array).
    pub fn mean(&self) -> f64 {
        self.data.iter().sum::<f64>() / self.data.len() as f64
    }

    fn offset(&self, index: [usize; 4]) -> usize {
        for axis in 0..4 {
            assert!(
                index[axis] < self.shape[axis],
                "Array4: index {index:?} is out of bounds for shape {:?}",
                self.shape
            );
        }
        let [_, s1, s2, s3] = self.shape;
        ((index[0] * s1 + index[1]) * s2 + index[2]) * s3 + index[3]
    }
}
