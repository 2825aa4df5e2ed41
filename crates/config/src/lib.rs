//! pgtide configuration.
