//! Tests of request.
