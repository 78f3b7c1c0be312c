//! The invariant checker (being written).
