"""Figures drawn from saved results only: each function takes a written dataset (and a folder), so any
figure can be redrawn later from the .nc files alone. Each analysis names its own figure function
(its `figures` hook); `report.figures.draw` dispatches on the result's `analysis` attr."""
