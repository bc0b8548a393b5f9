"""The contract between the Lambdas and the training container: what both sides import, written once.

Pure pydantic and the standard library (no boto3, powertools, torch or transformers), so it ships in the
Lambda package (``functions/lambda/``) and is copied into the training image alike.

* :mod:`stratos_contract.tasks` — task families, metrics, record formats, distillation modes, task facts;
* :mod:`stratos_contract.errors` — :class:`~stratos_contract.errors.StratosError`, the common base;
* :mod:`stratos_contract.runs` — a run's status and stages as the runs table records them;
* :mod:`stratos_contract.hyperparameters` — the training job's hyperparameters (typed fields, defaults, the
  string encoding SageMaker carries both ways);
* :mod:`stratos_contract.metrics` — ``JobMetrics``, the schema of the job's metrics.json;
* :mod:`stratos_contract.parallelism` — ``ParallelismPlan``, how a training job spreads over its hardware
  (chosen by the planner, obeyed by the container).

A test (``tests/unit/test_import_boundaries.py``) fails on a forbidden import: this package imports nothing
of Stratos; the container never imports the Lambda core; the Lambda core never imports local mode, the CLI
or the container.
"""
