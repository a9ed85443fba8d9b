//! `skycat check` (placeholder, filled in by the check work).
