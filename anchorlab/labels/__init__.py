"""Follow / fail labels (docs/method.md, MFR): the decision read inside a trace (capture), the rules that
classify an answer (rules), and labels.nc, computed once per run and reused (store)."""
