//! The Spark operator (SO) state machine (being written).
