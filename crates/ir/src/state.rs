//! (being written)
/// placeholder
pub struct State;
/// placeholder
pub struct Step;
/// placeholder
pub struct StepError;
