"""How interventions are executed: a naive reference and fast paths that must agree with it."""
