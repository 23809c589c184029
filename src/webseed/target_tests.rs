//! Tests of target.
