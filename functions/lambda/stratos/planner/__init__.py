"""The planner: pick Pareto-optimal servers and a teacher–student pair under the spec's limits.

Lambda-safe (pure Python + pydantic + boto3). Modules:

* :mod:`~stratos.planner.catalog` — instance and model catalogs (packaged JSON, typed loader);
* :mod:`~stratos.planner.pricing` — on-demand prices from the AWS Pricing API, snapshot fallback;
* :mod:`~stratos.planner.estimators` — memory fit, p50 latency, throughput, training time/cost, accuracy;
* :mod:`~stratos.planner.matching` — teacher–student pair rules;
* :mod:`~stratos.planner.selection` — feasibility, deployment score, Pareto frontier, baselines;
* :mod:`~stratos.planner.plan` — one spec end to end (:func:`plan`), infeasibility explained, fallback;
* :mod:`~stratos.planner.store` — S3 adapter for price tables and frontier documents;
* :mod:`~stratos.planner.steps` — the pipeline steps (LookUpPrices, SelectPlan, quota fallback), one call each;
* :mod:`~stratos.planner.reference` — exhaustive reference selection (tests and benchmark).

``stratos plan`` lives with the other commands (``stratos_cli.plan_cli``), outside the Lambda package.
"""

from stratos.planner.plan import PlanResult, fallback_plan_ref, plan

__all__ = ["PlanResult", "fallback_plan_ref", "plan"]
