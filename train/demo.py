"""`make demo` until the agent's replay lands: one synthetic window through MAD_small."""
