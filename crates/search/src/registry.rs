//! One registry per extension trait: the sketch policies, the mutation policies and the
//! cost models the search knows by name, each listed once, here.
//!
//! A [`Registry`] maps a name to a factory. The built-in ones ([`sketch_policies`],
//! [`mutation_policies`], [`cost_models`]) are ordinary values: a user adds an own
//! implementation with [`Registry::register`] (or passes a factory straight to a
//! [`crate::job::TuneOptions`]) without touching any `match`. The policy presets of
//! `tessel tune --policy` and of the experiment's configurations are the rows of
//! [`PRESETS`].
//!
//! ```
//! use tessel_search::registry::{sketch_policies, PRESETS};
//! use tessel_rl_policy::{SketchPolicy, Uniform};
//!
//! /// A user's policy: always the first sketch.
//! struct First;
//! impl SketchPolicy for First {
//!     fn name(&self) -> &str { "first" }
//!     fn allocate(&mut self, n: usize, _: usize, _: &mut tessel_ir::rng::TesselRng) -> Vec<u32> { vec![0; n] }
//!     fn reward(&mut self, _: u32, _: f64) {}
//! }
//!
//! let mut reg = sketch_policies();
//! assert_eq!(reg.names(), ["uniform", "ducb", "thompson", "egreedy"]);
//! reg.register("first", "always sketch 0", |_seed| Box::new(First));
//! assert_eq!(reg.make("first", 0).unwrap().name(), "first");
//! let unknown = reg.make("nope", 0).err().expect("not registered");
//! assert!(unknown.to_string().contains("known: uniform, ducb, thompson, egreedy, first"));
//! assert_eq!(PRESETS[0].name, "baseline");
//! ```

use std::fmt;
use std::sync::Arc;
use tessel_cost_model::model::{CostModel, GbdtModel, GbdtModelParams, RandomModel, GBDT_PRESETS};
use tessel_mutation_model::{Classifier, FixedWeights, MutationPolicy};
use tessel_rl_policy::{DiscountedUcb, EpsilonGreedy, SketchPolicy, Thompson, Uniform};

/// Makes a fresh `T` from the run's seed.
pub type Factory<T> = Arc<dyn Fn(u64) -> Box<T> + Send + Sync>;

/// A name the registry does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{name}` (known: {})", known.join(", "))]
pub struct UnknownName {
    /// What was looked up (`sketch policy`, `cost model`, ...).
    pub what: &'static str,
    /// The name asked for.
    pub name: String,
    /// The names the registry knows, in order.
    pub known: Vec<String>,
}

/// One registered implementation.
pub struct Entry<T: ?Sized> {
    /// Its name (as given on the command line).
    pub name: String,
    /// One line on what it is.
    pub about: String,
    make: Factory<T>,
}

impl<T: ?Sized> Clone for Entry<T> {
    fn clone(&self) -> Self {
        Entry {
            name: self.name.clone(),
            about: self.about.clone(),
            make: Arc::clone(&self.make),
        }
    }
}

/// Implementations of one trait by name, in registration order.
pub struct Registry<T: ?Sized> {
    what: &'static str,
    entries: Vec<Entry<T>>,
}

impl<T: ?Sized> Clone for Registry<T> {
    fn clone(&self) -> Self {
        Registry {
            what: self.what,
            entries: self.entries.clone(),
        }
    }
}

impl<T: ?Sized> fmt::Debug for Registry<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("what", &self.what)
            .field("names", &self.names())
            .finish()
    }
}

impl<T: ?Sized> Registry<T> {
    /// An empty registry of `what` (`"sketch policy"`: used in error messages).
    pub fn new(what: &'static str) -> Registry<T> {
        Registry {
            what,
            entries: Vec::new(),
        }
    }

    /// Registers `make` under `name`, replacing an entry of that name.
    pub fn register(
        &mut self,
        name: &str,
        about: &str,
        make: impl Fn(u64) -> Box<T> + Send + Sync + 'static,
    ) -> &mut Registry<T> {
        let entry = Entry {
            name: name.to_string(),
            about: about.to_string(),
            make: Arc::new(make),
        };
        match self.entries.iter_mut().find(|e| e.name == name) {
            Some(e) => *e = entry,
            None => self.entries.push(entry),
        }
        self
    }

    /// The names, in registration order.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }

    /// The entries, in registration order.
    pub fn entries(&self) -> &[Entry<T>] {
        &self.entries
    }

    /// The factory registered as `name`.
    pub fn factory(&self, name: &str) -> Result<Factory<T>, UnknownName> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| Arc::clone(&e.make))
            .ok_or_else(|| UnknownName {
                what: self.what,
                name: name.to_string(),
                known: self.entries.iter().map(|e| e.name.clone()).collect(),
            })
    }

    /// A fresh instance of `name`, made from `seed`.
    pub fn make(&self, name: &str, seed: u64) -> Result<Box<T>, UnknownName> {
        self.factory(name).map(|f| f(seed))
    }
}

/// The sketch policies: `uniform` (Ansor), `ducb` (discounted UCB, the default learned
/// policy), `thompson`, `egreedy`; each with its default parameters.
pub fn sketch_policies() -> Registry<dyn SketchPolicy> {
    let mut r: Registry<dyn SketchPolicy> = Registry::new("sketch policy");
    r.register(
        "uniform",
        "Ansor: a uniformly random sketch per sample",
        |_| Box::new(Uniform),
    )
    .register("ducb", "discounted-UCB sketch selection", |_| {
        Box::new(DiscountedUcb::default())
    })
    .register("thompson", "Thompson sampling over sketches", |_| {
        Box::new(Thompson::default())
    })
    .register("egreedy", "epsilon-greedy sketch selection", |_| {
        Box::new(EpsilonGreedy::default())
    });
    r
}

/// The mutation policies: `fixed` (Ansor's weights) and `classifier` (the learned
/// mutation-rule predictor).
pub fn mutation_policies() -> Registry<dyn MutationPolicy> {
    let mut r: Registry<dyn MutationPolicy> = Registry::new("mutation policy");
    r.register("fixed", "Ansor: fixed mutation-rule weights", |_| {
        Box::new(FixedWeights)
    })
    .register("classifier", "learned mutation-rule predictor", |_| {
        Box::new(Classifier::default())
    });
    r
}

/// The cost models the search scores with: the GBDT variants of
/// [`tessel_cost_model::GBDT_PRESETS`] (`gbdt`, the search's default: every tuning figure so
/// far was measured with it; `gbdt-rank`; `gbdt-packsum`), random during warm-up, and
/// `random` (ablation).
pub fn cost_models() -> Registry<dyn CostModel> {
    let mut r: Registry<dyn CostModel> = Registry::new("cost model");
    for preset in GBDT_PRESETS {
        r.register(preset.name, preset.about, move |seed| {
            Box::new(GbdtModel::new(GbdtModelParams {
                seed,
                ..(preset.params)()
            }))
        });
    }
    r.register("random", "random scores (ablation)", |seed| {
        Box::new(RandomModel::new(seed))
    });
    r
}

/// A named pair of policies: a `--policy` preset, and a configuration of the experiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preset {
    /// The preset's name.
    pub name: &'static str,
    /// Its sketch policy (a name in [`sketch_policies`]).
    pub sketch: &'static str,
    /// Its mutation policy (a name in [`mutation_policies`]).
    pub mutation: &'static str,
    /// The paper's label.
    pub paper: &'static str,
}

/// The presets, baseline first: `baseline` (Ansor), `rl` (discounted-UCB sketch
/// selection), `ml` (learned mutation-rule predictor), `both`.
pub const PRESETS: [Preset; 4] = [
    Preset {
        name: "baseline",
        sketch: "uniform",
        mutation: "fixed",
        paper: "(B) Ansor",
    },
    Preset {
        name: "rl",
        sketch: "ducb",
        mutation: "fixed",
        paper: "(S) + sketch selection",
    },
    Preset {
        name: "ml",
        sketch: "uniform",
        mutation: "classifier",
        paper: "(M) + mutation-rule prediction",
    },
    Preset {
        name: "both",
        sketch: "ducb",
        mutation: "classifier",
        paper: "(S+M)",
    },
];

/// The preset called `name`.
pub fn preset(name: &str) -> Result<&'static Preset, UnknownName> {
    PRESETS
        .iter()
        .find(|p| p.name == name.trim())
        .ok_or_else(|| UnknownName {
            what: "policy preset",
            name: name.to_string(),
            known: PRESETS.iter().map(|p| p.name.to_string()).collect(),
        })
}
