"""What a finished run says: summary.md (each analysis's paper claims) and verify (its recovery targets
scored against a known circuit)."""
