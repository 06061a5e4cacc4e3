"""Interventions as data + the few tensor operations that install them inside a trace."""
