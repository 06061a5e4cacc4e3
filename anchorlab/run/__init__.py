"""The run stage: a recipe's plan executed batch by batch into a resumable run folder (executor),
its chunks and manifest (store), the written results (results) and ablation sweeps (sweeps)."""
