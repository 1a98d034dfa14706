//! The text form of a state, in Ansor's style: the loop structure of every stage, with
//! attached stages inside the loop they are computed at. Extents are those after bound
//! inference when the state is concrete (a stage computed at a tile shows the tile), and
//! `?` for sketch holes.
//!
//! ```text
//! Placeholder: A, B
//! parallel i.0@j.0@ (0,64)
//!   for k (0,512)
//!     vectorize j.1 (0,8)
//!       C += ...
//! ```

use super::{ComputeAt, Stage, State};
use crate::dag::OpKind;
use std::fmt::{self, Write};

impl State {
    fn write_stage(
        &self,
        out: &mut String,
        stage: usize,
        depth: usize,
        inferred: Option<&[Vec<i64>]>,
    ) -> fmt::Result {
        let st: &Stage = &self.stages[stage];
        let mut depth = depth;
        for (pos, &id) in st.leaves.iter().enumerate() {
            let it = st.iter(id);
            let extent = match inferred
                .and_then(|x| x.get(stage))
                .and_then(|x| x.get(id.index()))
            {
                Some(e) => e.to_string(),
                None => it.extent.map_or("?".to_string(), |e| e.to_string()),
            };
            let keyword = match it.annotation.keyword() {
                "" => "for ",
                k => k,
            };
            write!(
                out,
                "{}{keyword}{} (0,{extent})",
                "  ".repeat(depth),
                it.name
            )?;
            if pos == 0 {
                if let Some(n) = st.auto_unroll_max_step {
                    write!(out, " @auto_unroll_max_step({n})")?;
                }
            }
            writeln!(out)?;
            depth += 1;
            for attached in self.attached_at(stage, id) {
                self.write_stage(out, attached, depth, inferred)?;
            }
        }
        let op = self.dag.op(st.op);
        let assign = match &op.kind {
            OpKind::Compute(c) => match c.reducer {
                Some(crate::dag::Reducer::Sum) => "+=",
                Some(crate::dag::Reducer::Max) => "max=",
                None => "=",
            },
            OpKind::Placeholder => "=",
        };
        writeln!(out, "{}{} {assign} ...", "  ".repeat(depth), st.name)
    }

    /// The steps, one per line, as JSON.
    pub fn steps_text(&self) -> String {
        self.steps
            .iter()
            .enumerate()
            .map(|(k, s)| format!("{k:>3}: {s}\n"))
            .collect()
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        let inputs: Vec<&str> = self
            .stages
            .iter()
            .filter(|s| !s.is_compute)
            .map(|s| s.name.as_str())
            .collect();
        writeln!(out, "Placeholder: {}", inputs.join(", "))?;
        let inferred = crate::lower::inferred_extents(self);
        for (k, st) in self.stages.iter().enumerate() {
            if st.is_compute && st.compute_at == ComputeAt::Root {
                self.write_stage(&mut out, k, 0, inferred.as_deref())?;
            }
        }
        f.write_str(&out)
    }
}
