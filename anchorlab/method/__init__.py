"""The method as pure functions (docs/method.md): the restricted logit lens and Φ, head and sublayer
contributions, NSSD, LDAR and synchrony, and the bootstrap CIs; no model, trace or I/O here."""
