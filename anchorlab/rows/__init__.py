"""Rows: one encoded prompt per (sample, task) with its token roles, left-padded batches of them, and the
shaping of per-row results into (task, sample) grids."""
