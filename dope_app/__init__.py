"""Orchestration above the stages: the `dope` CLI verbs, the demo and the container entry point.

Imports flow one way: `dope_app` uses `dope_stream`, `trainer` and `infer`; none of them imports it.
Environment variables are read here (and nowhere below), then travel as typed config values.
"""
