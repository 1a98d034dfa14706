//! The layout rewrite of micro-kernel `B` operands: which inputs are packed
//! ([`LayoutRewrite`]), when (once for constant weights, on every call for the others), and
//! the packing loop itself.
//!
//! A packed copy stores an input, viewed as a row-major `rows`×`cols` matrix, as `cols/nr`
//! panels of `rows`×`nr` (element `(r, c)` at `((c/nr)·rows + r)·nr + c%nr`), so that a
//! micro-kernel call reads its `k`×`nr` slice of `B` contiguously. Only the rows and panels
//! that the calls can read are copied ([`PackPlan`]).

use crate::aligned::AlignedBuf;
use crate::analysis::PackPlan;
use crate::runtime::{self, Runtime};
use std::str::FromStr;

/// Which `B` operands of micro-kernel calls read a packed copy (`[cols/NR][rows][NR]`
/// panels) instead of the input itself. Only inputs read as row-major rows whose length is
/// a multiple of the tile's `NR` qualify.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LayoutRewrite {
    /// No packing: micro-kernels read `B` in place.
    #[default]
    Off,
    /// Ansor's layout rewrite of constant weights ([`tessel_ir::loop_nest::Buffer::constant`]
    /// inputs: convolution and dense weights): the copy is made on the first
    /// [`Kernel::run`](crate::Kernel::run) (or by
    /// [`Kernel::pack_weights`](crate::Kernel::pack_weights)) and reused, untimed after the
    /// first call. A cheap fingerprint (address, length and 64 sampled elements) makes a
    /// later run with different weights repack, but weights changed in place at unsampled
    /// elements are not noticed; call `pack_weights` then. Other inputs are read in place.
    Weights,
    /// As [`LayoutRewrite::Weights`], and every other input `B` operand (a matmul operand,
    /// an activation) is packed again on **every** `Kernel::run`, inside the call (so its
    /// cost is part of the measured time, as in a BLAS that packs per call).
    All,
}

impl LayoutRewrite {
    /// Every mode, in order.
    pub const MODES: [LayoutRewrite; 3] = [
        LayoutRewrite::Off,
        LayoutRewrite::Weights,
        LayoutRewrite::All,
    ];

    /// The mode's name: `off`, `weights` or `all`.
    pub fn name(self) -> &'static str {
        match self {
            LayoutRewrite::Off => "off",
            LayoutRewrite::Weights => "weights",
            LayoutRewrite::All => "all",
        }
    }

    /// True when an input `B` operand is packed under this mode (`constant`: the input is a
    /// constant weight).
    pub fn packs(self, constant: bool) -> bool {
        match self {
            LayoutRewrite::Off => false,
            LayoutRewrite::Weights => constant,
            LayoutRewrite::All => true,
        }
    }
}

impl std::fmt::Display for LayoutRewrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A string that names no [`LayoutRewrite`] mode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown layout rewrite `{0}` (use off, weights or all)")]
pub struct ParseLayoutRewriteError(pub String);

impl FromStr for LayoutRewrite {
    type Err = ParseLayoutRewriteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LayoutRewrite::MODES
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| ParseLayoutRewriteError(s.to_string()))
    }
}

/// Rows of a block that one packing step copies panel by panel: the block's source rows
/// are read as sequential streams and each panel receives `ROW_BLOCK·nr` contiguous floats.
const ROW_BLOCK: usize = 8;

/// Copies smaller than this many floats run on the calling thread only (waking the pool
/// costs more than it saves).
const PARALLEL_MIN: usize = 1 << 16;

/// One packed copy and, for a constant weight, the fingerprint of the input it was made
/// from.
pub(crate) struct Packed {
    pub plan: PackPlan,
    fingerprint: Option<u64>,
    pub data: AlignedBuf,
}

impl Packed {
    /// An empty copy for `plan` (allocated on first use).
    pub fn new(plan: PackPlan) -> Packed {
        Packed {
            plan,
            fingerprint: None,
            data: AlignedBuf::default(),
        }
    }

    /// Address, length and 64 evenly spaced elements of `src`, hashed.
    fn fingerprint(src: &[f32]) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (src.as_ptr() as usize, src.len()).hash(&mut h);
        let step = (src.len() / 64).max(1);
        for x in src.iter().step_by(step).chain(src.last()) {
            x.to_bits().hash(&mut h);
        }
        h.finish()
    }

    /// Brings the copy up to date with `src` (the input's whole slice, whose length the
    /// caller checked against the plan's buffer): always for a per-call plan or when
    /// `force`, else only when the fingerprint changed. `rt` runs large copies on the
    /// kernel's threads.
    pub fn refresh(&mut self, src: &[f32], force: bool, rt: &Runtime) {
        let p = self.plan;
        if !p.per_call {
            let fp = Packed::fingerprint(src);
            if !force && self.fingerprint == Some(fp) {
                return;
            }
            self.fingerprint = Some(fp);
        }
        let len = (p.rows * p.cols) as usize;
        if self.data.len() != len {
            self.data = AlignedBuf::zeroed(len);
        }
        pack(src, self.data.as_mut_slice(), &p, rt);
    }
}

/// What one packing job needs; shared by the threads through a pointer.
struct Job {
    src: *const f32,
    dst: *mut f32,
    /// Matrix rows (the panel height) and columns.
    rows: usize,
    cols: usize,
    nr: usize,
    /// First row and panel to copy, and the panels per row.
    row0: usize,
    panel0: usize,
    panels: usize,
    /// One past the last row to copy.
    row_end: usize,
}

/// Packs rows `p.row_lo..p.row_hi` and panels `p.panel_lo..p.panel_hi` of `src` into `dst`.
fn pack(src: &[f32], dst: &mut [f32], p: &PackPlan, rt: &Runtime) {
    let (rows, cols, nr) = (p.rows as usize, p.cols as usize, p.nr as usize);
    let (row0, row_end) = (p.row_lo as usize, p.row_hi as usize);
    let (panel0, panels) = (p.panel_lo as usize, (p.panel_hi - p.panel_lo) as usize);
    // The plan's ranges lie in the matrix and the matrix is both slices' length (checked
    // again here because the raw-pointer loop below relies on it).
    let fits = row0 <= row_end
        && row_end <= rows
        && (panel0 + panels) * nr <= cols
        && src.len() >= rows * cols
        && dst.len() >= rows * cols;
    if !fits || panels == 0 || row0 == row_end {
        return;
    }
    let job = Job {
        src: src.as_ptr(),
        dst: dst.as_mut_ptr(),
        rows,
        cols,
        nr,
        row0,
        panel0,
        panels,
        row_end,
    };
    let blocks = (row_end - row0).div_ceil(ROW_BLOCK);
    let ctx = &job as *const Job as *const u8;
    if (row_end - row0) * panels * nr >= PARALLEL_MIN {
        // SAFETY: `pack_blocks` copies disjoint row blocks for disjoint ranges of block
        // numbers, every address it forms is within the slices (checked above), and
        // `tessel_parallel_for` returns only once every block is done, so `job` and the
        // borrowed slices outlive every use.
        unsafe { runtime::tessel_parallel_for(rt, pack_blocks, ctx, blocks as i64) };
    } else {
        // SAFETY: as above, on this thread.
        unsafe { pack_blocks(ctx, 0, blocks as i64) };
    }
}

/// Copies row blocks `start..end` of the [`Job`] at `ctx`: for each block, panel by panel,
/// `ROW_BLOCK` rows of `nr` floats.
///
/// # Safety
/// `ctx` must point to a live `Job` whose ranges lie within its `src` and `dst` (both at
/// least `rows·cols` floats); concurrent calls must have disjoint block ranges.
unsafe extern "C" fn pack_blocks(ctx: *const u8, start: i64, end: i64) {
    // SAFETY: guaranteed by the caller.
    let j = unsafe { &*(ctx as *const Job) };
    for blk in start as usize..end as usize {
        let r0 = j.row0 + blk * ROW_BLOCK;
        let r1 = (r0 + ROW_BLOCK).min(j.row_end);
        for panel in j.panel0..j.panel0 + j.panels {
            for r in r0..r1 {
                let s = r * j.cols + panel * j.nr;
                let d = (panel * j.rows + r) * j.nr;
                // SAFETY: `r < rows` and `(panel + 1)·nr <= cols`, so both ranges of `nr`
                // floats lie within `rows·cols`; the source and destination are different
                // allocations; other threads write other rows.
                unsafe { copy_row(j.src.add(s), j.dst.add(d), j.nr) };
            }
        }
    }
}

/// Copies `n` floats; the common panel widths get a fixed-size copy the compiler inlines.
///
/// # Safety
/// `src` must be readable and `dst` writable for `n` floats, and they must not overlap.
#[inline(always)]
unsafe fn copy_row(src: *const f32, dst: *mut f32, n: usize) {
    // SAFETY (each arm): forwarded from this function's contract.
    unsafe {
        match n {
            8 => std::ptr::copy_nonoverlapping(src, dst, 8),
            16 => std::ptr::copy_nonoverlapping(src, dst, 16),
            24 => std::ptr::copy_nonoverlapping(src, dst, 24),
            _ => std::ptr::copy_nonoverlapping(src, dst, n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessel_ir::loop_nest::BufferId;

    fn plan(rows: i64, cols: i64, nr: i64) -> PackPlan {
        PackPlan {
            src: BufferId(0),
            rows,
            cols,
            nr,
            per_call: true,
            row_lo: 0,
            row_hi: rows,
            panel_lo: 0,
            panel_hi: cols / nr,
        }
    }

    fn reference(src: &[f32], p: &PackPlan) -> Vec<f32> {
        let (rows, cols, nr) = (p.rows as usize, p.cols as usize, p.nr as usize);
        let mut out = vec![0.0; rows * cols];
        for r in p.row_lo as usize..p.row_hi as usize {
            for c in p.panel_lo as usize * nr..p.panel_hi as usize * nr {
                out[((c / nr) * rows + r) * nr + c % nr] = src[r * cols + c];
            }
        }
        out
    }

    #[test]
    fn packing_matches_the_panel_layout_serial_and_parallel() {
        // Small (serial) and large enough for the pool, odd row counts, every width.
        for (rows, cols, nr, threads) in [
            (5, 16, 8, 1),
            (13, 48, 16, 2),
            (1027, 96, 24, 2),
            (700, 128, 16, 2),
            (9, 40, 40, 1),
        ] {
            let p = plan(rows, cols, nr);
            let src: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
            let mut dst = vec![-1.0; (rows * cols) as usize];
            pack(&src, &mut dst, &p, &Runtime::new(threads));
            assert_eq!(dst, reference(&src, &p), "{rows}x{cols} nr={nr}");
        }
    }

    #[test]
    fn packing_copies_only_the_planned_rows_and_panels() {
        let mut p = plan(20, 64, 16);
        p.row_lo = 3;
        p.row_hi = 17;
        p.panel_lo = 1;
        p.panel_hi = 3;
        let src: Vec<f32> = (0..20 * 64).map(|v| v as f32 + 1.0).collect();
        let mut dst = vec![0.0; 20 * 64];
        pack(&src, &mut dst, &p, &Runtime::new(1));
        assert_eq!(dst, reference(&src, &p));
    }

    #[test]
    fn modes_parse_and_print() {
        for m in LayoutRewrite::MODES {
            assert_eq!(m.name().parse::<LayoutRewrite>(), Ok(m));
            assert_eq!(m.to_string(), m.name());
        }
        assert!("packed".parse::<LayoutRewrite>().is_err());
        assert!(!LayoutRewrite::Off.packs(true));
        assert!(LayoutRewrite::Weights.packs(true) && !LayoutRewrite::Weights.packs(false));
        assert!(LayoutRewrite::All.packs(false));
    }
}
