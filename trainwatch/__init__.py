"""Trainwatch's client: track a training script of your own.

    import trainwatch
    run = trainwatch.init(project="vision", name="resnet18 lr=0.1", config={"lr": 0.1})
    run.watch(model, optimizer)
    ... run.log({"loss": loss}, step=step) ...
    run.finish()

Needs torch, numpy and requests only. TRAINWATCH_URL and TRAINWATCH_TOKEN say where to send;
TRAINWATCH_MODE=offline records to a folder for `trainwatch sync` later.
"""

from trainer.config import ConfigError
from trainer.entry import job
from trainwatch.checks import gradient_check, sanity_checks
from trainwatch.run import Run, init

__all__ = ["ConfigError", "Run", "gradient_check", "init", "job", "sanity_checks"]
__version__ = "0.1.0"
