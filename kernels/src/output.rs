//! Output buffers of the memory-bound CPU kernels, created where they are written.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// A `len`-element buffer cut into pieces of `piece` elements (the last may be shorter),
/// each zeroed and then handed to `fill(index, piece)` on a rayon task, at least
/// `min_pieces` pieces per task.
///
/// `vec![0; len]` would zero the whole buffer on the calling thread before any task starts:
/// a full pass through memory on one core (33.5 MB for the gradient of layer1's pool at
/// batch 128), after which the tasks read it all back. Here each task zeroes its piece
/// just before filling it, while the piece is in its cache; the zeroes only matter to
/// kernels that leave some elements alone or accumulate into them.
pub(crate) fn filled_in_parallel<T: Copy + Default + Send + Sync>(
    len: usize,
    piece: usize,
    min_pieces: usize,
    fill: impl Fn(usize, &mut [T]) + Sync + Send,
) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(len);
    if len == 0 {
        return out;
    }
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(piece.max(1))
        .enumerate()
        .with_min_len(min_pieces.max(1))
        .for_each(|(index, piece)| {
            piece.fill(MaybeUninit::new(T::default()));
            // SAFETY: every element of `piece` was initialised on the line above, and
            // MaybeUninit<T> has the layout of T.
            let piece = unsafe { &mut *(piece as *mut [MaybeUninit<T>] as *mut [T]) };
            fill(index, piece);
        });
    // SAFETY: the pieces cover `0..len` and each was initialised before `fill` saw it; a
    // panic in a task propagates out of the loop above before this line.
    unsafe { out.set_len(len) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_piece_is_zeroed_then_filled_once() {
        // Pieces of 3 over 10 elements: the last piece is one element long.
        let out: Vec<f64> = filled_in_parallel(10, 3, 1, |index, piece| {
            assert!(piece.iter().all(|&v| v == 0.0));
            piece[0] = index as f64 + 1.0;
        });
        assert_eq!(out, [1.0, 0.0, 0.0, 2.0, 0.0, 0.0, 3.0, 0.0, 0.0, 4.0]);
        let empty: Vec<f32> = filled_in_parallel(0, 0, 1, |_, _| unreachable!());
        assert!(empty.is_empty());
    }
}
