"""Few-shot classifiers on cached CLIP features: the sweep of shot counts x methods x support-set draws.

`sweep` runs it (its `evaluate` is the fewshot stage's experiment); `support` draws the paired support sets,
`train` trains every draw of a shot count as one batched head, `methods` (trained) and `closed`
(training-free) are the methods, `registry` names them, and `modes` is the modes experiment.
"""
