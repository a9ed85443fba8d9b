//! `$SKYCAT_HOME/ssh/config` entries per cluster (placeholder, filled in by the SSH-config work).
