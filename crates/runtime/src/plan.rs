//! Memory planning: every activation buffer of a network gets an offset in one arena, and
//! buffers whose lifetimes do not overlap share memory.
//!
//! A buffer is live from the step that writes it (`first`) to the last step that reads it
//! (`last`), both inclusive, over the execution order; network inputs are written before
//! step 0 and network outputs are read after the last step. Buffers are placed in order of
//! `first` (larger first on ties), each at the lowest 64-byte-aligned offset where it
//! overlaps no buffer placed before it whose lifetime meets its own (first fit). So a step
//! never writes over what it reads, or over anything still to be read later.

use crate::arena::round_up;

/// One buffer to place: its name, size and lifetime over the execution order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferLife {
    /// A name for reports (the layer that writes it).
    pub name: String,
    /// Number of floats.
    pub len: usize,
    /// The step that writes it (0 for a network input).
    pub first: usize,
    /// The last step that reads it (one past the last step for a network output).
    pub last: usize,
}

/// A buffer with its place in the arena.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedBuffer {
    /// The buffer.
    pub life: BufferLife,
    /// Offset in the arena, in floats (a multiple of 16: 64-byte aligned).
    pub offset: usize,
}

impl PlacedBuffer {
    /// One past its last float.
    pub fn end(&self) -> usize {
        self.offset + self.life.len
    }
}

/// Where every buffer lives, and how much memory that takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// The buffers, in the order they were given.
    pub buffers: Vec<PlacedBuffer>,
    /// Floats in the arena (the planned peak).
    pub arena_len: usize,
}

impl MemoryPlan {
    /// Places `buffers` (see the module docs).
    pub fn new(buffers: Vec<BufferLife>) -> MemoryPlan {
        let mut order: Vec<usize> = (0..buffers.len()).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (&buffers[a], &buffers[b]);
            x.first
                .cmp(&y.first)
                .then(y.len.cmp(&x.len))
                .then(a.cmp(&b))
        });
        let mut offsets = vec![0usize; buffers.len()];
        let mut placed: Vec<usize> = Vec::new();
        let mut arena_len = 0;
        for &k in &order {
            let b = &buffers[k];
            let size = round_up(b.len.max(1));
            // Regions taken by buffers live at the same time, by offset.
            let mut taken: Vec<(usize, usize)> = placed
                .iter()
                .filter(|&&j| overlaps(b, &buffers[j]))
                .map(|&j| (offsets[j], offsets[j] + round_up(buffers[j].len.max(1))))
                .collect();
            taken.sort_unstable();
            let mut at = 0;
            for (lo, hi) in taken {
                if at + size <= lo {
                    break;
                }
                at = at.max(hi);
            }
            offsets[k] = at;
            arena_len = arena_len.max(at + size);
            placed.push(k);
        }
        MemoryPlan {
            buffers: buffers
                .into_iter()
                .zip(offsets)
                .map(|(life, offset)| PlacedBuffer { life, offset })
                .collect(),
            arena_len,
        }
    }

    /// Floats of all buffers together, as if none shared memory (each rounded to 64 bytes).
    pub fn total_len(&self) -> usize {
        self.buffers
            .iter()
            .map(|b| round_up(b.life.len.max(1)))
            .sum()
    }

    /// Checks the plan: every buffer is 64-byte aligned and inside the arena, and no two
    /// buffers that are live at the same step overlap. The error names the first pair.
    pub fn check(&self) -> Result<(), String> {
        for b in &self.buffers {
            if b.offset % crate::arena::ALIGN_FLOATS != 0 || b.end() > self.arena_len {
                return Err(format!(
                    "buffer `{}` at {}..{} is misaligned or outside the arena of {} floats",
                    b.life.name,
                    b.offset,
                    b.end(),
                    self.arena_len
                ));
            }
        }
        for (i, a) in self.buffers.iter().enumerate() {
            for b in &self.buffers[i + 1..] {
                let share = a.offset < b.end() && b.offset < a.end();
                if share && overlaps(&a.life, &b.life) {
                    return Err(format!(
                        "buffers `{}` (steps {}..={}, floats {}..{}) and `{}` (steps {}..={}, \
                         floats {}..{}) are live together and overlap",
                        a.life.name,
                        a.life.first,
                        a.life.last,
                        a.offset,
                        a.end(),
                        b.life.name,
                        b.life.first,
                        b.life.last,
                        b.offset,
                        b.end()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Whether two lifetimes share a step.
fn overlaps(a: &BufferLife, b: &BufferLife) -> bool {
    a.first <= b.last && b.first <= a.last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn life(name: &str, len: usize, first: usize, last: usize) -> BufferLife {
        BufferLife {
            name: name.into(),
            len,
            first,
            last,
        }
    }

    #[test]
    fn a_chain_reuses_two_slots() {
        // x0 -> x1 -> x2 -> x3: each buffer lives for two steps, so two slots suffice.
        let plan = MemoryPlan::new(vec![
            life("x0", 100, 0, 0),
            life("x1", 100, 0, 1),
            life("x2", 100, 1, 2),
            life("x3", 100, 2, 3),
        ]);
        plan.check().unwrap();
        assert_eq!(plan.arena_len, 2 * 112);
        assert_eq!(plan.total_len(), 4 * 112);
        assert_eq!(plan.buffers[0].offset, plan.buffers[2].offset);
    }

    #[test]
    fn a_skip_connection_stays_live() {
        // a is read at step 2 again (a residual): it cannot share with b or c.
        let plan = MemoryPlan::new(vec![
            life("a", 16, 0, 2),
            life("b", 16, 1, 2),
            life("c", 16, 2, 3),
        ]);
        plan.check().unwrap();
        let offs: Vec<usize> = plan.buffers.iter().map(|b| b.offset).collect();
        assert_eq!(offs, vec![0, 16, 32]);
    }

    #[test]
    fn the_checker_finds_an_overlap() {
        let mut plan = MemoryPlan::new(vec![life("a", 16, 0, 1), life("b", 16, 1, 2)]);
        plan.check().unwrap();
        plan.buffers[1].offset = 0;
        let err = plan.check().unwrap_err();
        assert!(err.contains("`a`") && err.contains("`b`"), "{err}");
        plan.buffers[1].offset = 8;
        assert!(plan.check().unwrap_err().contains("misaligned"));
    }
}
