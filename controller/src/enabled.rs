//! Which clouds `skycat check` enabled for launching (placeholder, filled in by the check work).
