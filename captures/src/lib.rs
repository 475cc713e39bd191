//! Captures (issue #5).
