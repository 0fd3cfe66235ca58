//! Properties of the vocabulary: units print and parse back, type patterns match as globs.

mod props;
