"""Instruments that judge a store: the workload generator, history recording and the verifier.

Nothing here depends on a particular backend; a history recorded in process or over HTTP
is checked the same way.
"""
