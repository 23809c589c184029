//! Tests of respond.
