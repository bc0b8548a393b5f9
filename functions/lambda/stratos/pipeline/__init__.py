"""Orchestration logic behind the state machine's Lambda steps (one module per step, plus shared models).

Each step module exposes one function the matching handler calls (``functions/<step>/app.py``); AWS access
goes through the lazily created adapters in :mod:`stratos.aws`. Importing a step module never imports boto3:
the first AWS call does.
"""
