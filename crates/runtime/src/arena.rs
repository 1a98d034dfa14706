//! A 64-byte-aligned block of `f32`s.

/// Floats per 64 bytes: offsets in an arena are multiples of this.
pub const ALIGN_FLOATS: usize = 16;

/// `n` rounded up to a multiple of [`ALIGN_FLOATS`].
pub fn round_up(n: usize) -> usize {
    n.div_ceil(ALIGN_FLOATS) * ALIGN_FLOATS
}

/// Zero-initialised floats whose first element is 64-byte aligned (the backing vector has
/// a few floats of slack in front).
#[derive(Debug, Default)]
pub struct Arena {
    data: Vec<f32>,
    start: usize,
    len: usize,
}

impl Arena {
    /// An arena of `len` zeroed floats.
    pub fn zeroed(len: usize) -> Arena {
        let data = vec![0.0f32; len + ALIGN_FLOATS];
        let misalign = (data.as_ptr() as usize / 4) % ALIGN_FLOATS;
        let start = (ALIGN_FLOATS - misalign) % ALIGN_FLOATS;
        Arena { data, start, len }
    }

    /// Number of floats.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The floats.
    pub fn as_slice(&self) -> &[f32] {
        &self.data[self.start..self.start + self.len]
    }

    /// The floats, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arenas_are_aligned_and_sized() {
        for len in [0, 1, 17, 1000] {
            let a = Arena::zeroed(len);
            assert_eq!(a.as_slice().len(), len);
            assert_eq!(a.as_slice().as_ptr() as usize % 64, 0);
        }
        assert_eq!(round_up(1), 16);
        assert_eq!(round_up(32), 32);
    }
}
