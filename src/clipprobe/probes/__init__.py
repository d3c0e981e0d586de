"""Probes on frozen CLIP features: zero-shot, logistic regression, few-shot heads, counting and position."""
