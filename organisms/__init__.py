"""Trainers of the shipped toy models and model organisms, and their ground-truth checks.

Outside the `anchorlab` package on purpose: the library loads the weights these write
(`anchorlab.toy.shipped_path`) but never imports this package (scripts/import_graph.py checks it).
Run `python -m organisms train --variant NAME --out DIR` from a checkout; the SIIT family (toy:organism-*):
`python -m organisms train --circuit organisms/specs/NAME.json --seed N --out DIR`.
"""
