//! Mergeable, serializable sketches and window panes for weir's METRIC statements.
