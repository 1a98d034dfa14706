//! Zeroed `f32` buffers aligned to a cache line, for the memory the kernel itself owns
//! (packed weight panels, global temporaries).
//!
//! A `Vec<f32>` is only as aligned as the allocator makes it: glibc gives large blocks at
//! 16 bytes past a page, reused blocks anywhere on 16 bytes. The micro-kernels read each
//! `k` step of a packed panel as `NR/8` 32-byte loads; at 16 or 48 bytes into a line half of
//! them straddle two lines, which measured 7–9 % slower on whole convolutions, and the luck
//! of the allocation changed from one build of a kernel to the next.

/// One cache line of floats: the allocation unit that carries the alignment.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// Alignment, in bytes, of [`AlignedBuf`] data.
#[cfg(test)]
pub(crate) const ALIGN: usize = std::mem::align_of::<Line>();

/// A zero-initialised buffer of `len` floats whose first element is 64-byte aligned.
#[derive(Default)]
pub(crate) struct AlignedBuf {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedBuf {
    /// `len` zeros.
    pub fn zeroed(len: usize) -> AlignedBuf {
        AlignedBuf {
            lines: vec![Line([0.0; 16]); len.div_ceil(16)],
            len,
        }
    }

    /// Number of floats.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The floats.
    pub fn as_slice(&self) -> &[f32] {
        // SAFETY: `lines` holds `16·lines.len() >= len` contiguous, initialised `f32`s
        // (`Line` is `repr(C)` over `[f32; 16]`, so it has no padding), borrowed from `self`.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr() as *const f32, self.len) }
    }

    /// The floats, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: as in `as_slice`, borrowed mutably from `self`.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr() as *mut f32, self.len) }
    }

    /// Pointer to the first float.
    pub fn as_mut_ptr(&mut self) -> *mut f32 {
        self.lines.as_mut_ptr() as *mut f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_zeroed_aligned_and_exactly_long() {
        for len in [0usize, 1, 15, 16, 17, 1000, 1 << 18] {
            let mut b = AlignedBuf::zeroed(len);
            assert_eq!(b.len(), len);
            assert_eq!(b.as_slice().len(), len);
            assert!(b.as_slice().iter().all(|&x| x == 0.0));
            assert_eq!(b.as_mut_ptr() as usize % ALIGN, 0, "len {len}");
            if len > 0 {
                b.as_mut_slice()[len - 1] = 2.0;
                assert_eq!(b.as_slice()[len - 1], 2.0);
            }
        }
    }
}
