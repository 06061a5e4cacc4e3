"""Speed and memory benchmarks; `python -m benchmarks` (or `anchorlab bench`) runs them all."""
