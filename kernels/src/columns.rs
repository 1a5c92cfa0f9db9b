//! A row split into its even and odd columns (or its four column phases), and merged
//! back: the layout in which stride-2 and stride-4 windows (2x2 pooling, Winograd's 2x2 and
//! 4x4 tiles) become plain elementwise loops.
//!
//! Columns are counted in padded coordinates: input column `c` with `pad` columns of
//! padding on the left is column `c + pad`, and goes to slot `(c + pad) / 2` of the run
//! of its parity.

use crate::Element;

/// Input column `c` of `src` into `even[(c + pad) / 2]` or `odd[(c + pad) / 2]` by the
/// parity of `c + pad`. Slots past the end of a run are dropped; slots no column maps to
/// are left as they are.
#[inline(always)]
pub(crate) fn split_columns<T: Copy>(src: &[T], pad: usize, even: &mut [T], odd: &mut [T]) {
    let (first, second) = if pad.is_multiple_of(2) {
        (even, odd)
    } else {
        (odd, even)
    };
    let first = first.get_mut(pad / 2..).unwrap_or_default();
    let second = second.get_mut(pad.div_ceil(2)..).unwrap_or_default();
    for ((pair, a), b) in src
        .chunks_exact(2)
        .zip(first.iter_mut())
        .zip(second.iter_mut())
    {
        *a = pair[0];
        *b = pair[1];
    }
    if src.len() % 2 == 1 {
        if let Some(slot) = first.get_mut(src.len() / 2) {
            *slot = src[src.len() - 1];
        }
    }
}

/// [`split_columns`] for four phases: padded column `c + pad` of `src` into slot
/// `(c + pad) / 4` of run `(c + pad) % 4`; slots past a run's end are dropped.
#[inline(always)]
pub(crate) fn split_phases<T: Element>(src: &[T], pad: usize, mut phases: [&mut [T]; 4]) {
    let mut put = |c: usize, v: T| {
        let at = c + pad;
        if let Some(slot) = phases[at % 4].get_mut(at / 4) {
            *slot = v;
        }
    };
    // Columns up to the first one in phase 0 one by one, then whole groups of four.
    let lead = ((4 - pad % 4) % 4).min(src.len());
    for (c, &v) in src[..lead].iter().enumerate() {
        put(c, v);
    }
    let groups = src[lead..].chunks_exact(4);
    let tail_start = src.len() - groups.remainder().len();
    for (c, &v) in src.iter().enumerate().skip(tail_start) {
        put(c, v);
    }
    let first_slot = (lead + pad) / 4;
    let [p0, p1, p2, p3] = phases
        .each_mut()
        .map(|run| run.get_mut(first_slot..).unwrap_or_default());
    for ((((quad, a), b), c), d) in groups
        .zip(p0.iter_mut())
        .zip(p1.iter_mut())
        .zip(p2.iter_mut())
        .zip(p3.iter_mut())
    {
        *a = quad[0];
        *b = quad[1];
        *c = quad[2];
        *d = quad[3];
    }
}

/// The inverse of [`split_columns`]: column `c` of `dst` from slot `(c + pad) / 2` of the
/// run of its parity. Columns whose slot is past the end of its run are left as they are.
#[inline(always)]
pub(crate) fn merge_columns<T: Copy>(even: &[T], odd: &[T], pad: usize, dst: &mut [T]) {
    let (first, second) = if pad.is_multiple_of(2) {
        (even, odd)
    } else {
        (odd, even)
    };
    let first = first.get(pad / 2..).unwrap_or_default();
    let second = second.get(pad.div_ceil(2)..).unwrap_or_default();
    let len = dst.len();
    for ((pair, &a), &b) in dst.chunks_exact_mut(2).zip(first).zip(second) {
        pair[0] = a;
        pair[1] = b;
    }
    if len % 2 == 1 {
        if let Some(&v) = first.get(len / 2) {
            dst[len - 1] = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_then_merge_is_the_identity_on_covered_columns() {
        let src: Vec<f64> = (1..=7).map(f64::from).collect();
        // No padding: slots 0..4 of even take columns 0, 2, 4, 6; odd takes 1, 3, 5.
        let (mut even, mut odd) = (vec![0.0; 4], vec![0.0; 4]);
        split_columns(&src, 0, &mut even, &mut odd);
        assert_eq!(
            (even.clone(), odd.clone()),
            (vec![1.0, 3.0, 5.0, 7.0], vec![2.0, 4.0, 6.0, 0.0])
        );
        let mut back = vec![0.0; 7];
        merge_columns(&even, &odd, 0, &mut back);
        assert_eq!(back, src);
        // One column of padding: column c is padded column c + 1, so odd slot 0 holds
        // column 0 and even slot 1 holds column 1; even slot 0 is padding, left alone.
        let (mut even, mut odd) = (vec![-9.0; 4], vec![-9.0; 4]);
        split_columns(&src, 1, &mut even, &mut odd);
        assert_eq!(
            (even.clone(), odd.clone()),
            (vec![-9.0, 2.0, 4.0, 6.0], vec![1.0, 3.0, 5.0, 7.0])
        );
        let mut back = vec![0.0; 7];
        merge_columns(&even, &odd, 1, &mut back);
        assert_eq!(back, src);
        // Runs shorter than the row: the columns past them are dropped, and left alone.
        let (mut even, mut odd) = (vec![0.0; 2], vec![0.0; 2]);
        split_columns(&src, 0, &mut even, &mut odd);
        assert_eq!(
            (even.clone(), odd.clone()),
            (vec![1.0, 3.0], vec![2.0, 4.0])
        );
        let mut back = vec![0.0; 7];
        merge_columns(&even, &odd, 0, &mut back);
        assert_eq!(back, [1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0]);
    }
}
