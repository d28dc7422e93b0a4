//! To be written (see `super`).
