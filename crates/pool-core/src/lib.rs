//! pgtide's pool core.
#![forbid(unsafe_code)]
