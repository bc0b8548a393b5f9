"""The embedded AWS: the real template, state machine and handlers on one machine, over moto.

* :mod:`stratos_cli.local.template` — read ``template.yaml`` (CloudFormation tags, SAM globals) and resolve the
  intrinsics the stack uses, so the embedded resources are built FROM the template, never re-typed.
* :mod:`stratos_cli.local.moto_hooks` — version-pinned hooks into moto 5.2.5, one module per hook: Lambda
  invocations run the real handlers in-process (``lambdas``); EventBridge rules start Step Functions executions
  (``eventbridge``); SageMaker gains what moto lacks (``sagemaker``: training-job status driven by a training
  runner, endpoint state changes, UpdateEndpoint, quotas, "already exists"); SDK-integration error names
  (``sdk_errors``); atomic conditional writes (``dynamodb``).
* :mod:`stratos_cli.local.training` — the training-runner interface (create -> status sequence);
  :mod:`stratos_cli.local.process_runner` runs the real training container behind it (the tests' scripted
  runner lives in ``tests/doubles.py``).
* :mod:`stratos_cli.local.stack` — :class:`~stratos_cli.local.stack.EmbeddedStack`: build everything, upload specs,
  wait for executions, fire the schedule.

Never imported by a Lambda handler (moto is not in the Lambda package); tests enforce it.
"""
