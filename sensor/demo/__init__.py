"""Synthetic traffic and a demo feed, for ``veilleuse demo``, the tests and the benchmarks.

Everything here is written by Veilleuse: fictitious apps on reserved names
(``.example``, ``.test``) and documentation IP ranges. No real indicator data.
"""
