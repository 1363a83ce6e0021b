//! End-to-end test support for hearth.
