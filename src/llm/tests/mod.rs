//! Vendor layer tests against local protocol fakes.
