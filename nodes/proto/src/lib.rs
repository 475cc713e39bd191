//! Sans-IO protocol engine (issue #3).
