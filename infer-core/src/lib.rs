//! The network's shape, shared by the trainer and every inference path.
#![no_std]
#![deny(missing_docs)]

/// Pixels per image (28 × 28), the network's input width.
pub const INPUTS: usize = 784;
/// Hidden ReLU units.
pub const HIDDEN: usize = 512;
/// Output classes (digits 0–9).
pub const CLASSES: usize = 10;
