"""Stratos outside the Lambdas: the ``stratos`` command line, local mode (the embedded AWS, the local training
job, local endpoints, run reports) and operator tooling.

Nothing here ships in a Lambda: the template's ``CodeUri`` is ``functions/lambda/`` (the handlers, the
:mod:`stratos` core they import and its requirements); this package sits beside it and imports the core.

* :mod:`stratos_cli.cli` — the ``stratos`` entry point; each subcommand module registers itself:
  :mod:`~stratos_cli.run_cli` (``run``), :mod:`~stratos_cli.serving_cli` (``invoke``, ``ask``,
  ``endpoints``), :mod:`~stratos_cli.plan_cli` (``validate``, ``plan``), :mod:`~stratos_cli.data_cli`
  (``data``), :mod:`~stratos_cli.ops` (operator commands).
* :mod:`stratos_cli.local` — local mode.
"""
