"""Pure analysis: the condition language, measurements, metric and run outcomes, the judge.

Kept import-free on purpose: `zerodown.spec.analysis` imports `expr` from here while the decision
modules import the spec, so this package must not import its submodules eagerly.
"""
