"""The post-training pipeline through execloop's broker, as an orchestrator would run it:
data-clean -> data-balance -> hparam-config -> lora-sft -> eval, each step a sub-agent whose
verified outputs feed the next.

    python examples/post_training_pipeline.py [OUT_DIR] [--train-image execloop/train]

Without ANTHROPIC_API_KEY every step is answered by a SCRIPTED model (its skill's worked
solution, replayed: no LLM is called); with it, claude-sonnet-4-5 writes the scripts. The
training steps run in the train image (build it once: `execloop images build train --torch
cpu`, or `execloop images build train` on a GPU host). Same as `execloop demo --pipeline`.
"""

import argparse
import sys
from pathlib import Path

from rich.console import Console

from execloop.runtime.pipeline import STEPS
from execloop.runtime.pipeline_cli import pipeline_model, run_pipeline
from execloop.runtime.task import TaskStatus

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("out", nargs="?", type=Path, default=Path("pipeline-run"))
parser.add_argument("--train-image", default="execloop/train-cpu")
args = parser.parse_args()

console = Console()
model, label = pipeline_model()  # scripted unless ANTHROPIC_API_KEY is set
console.print(label, highlight=False)
args.out.mkdir(parents=True, exist_ok=True)
steps = run_pipeline(args.out, model=model, train_image=args.train_image, console=console)
passed = [step for step in steps if step.result.status is TaskStatus.PASSED]
sys.exit(0 if len(passed) == len(STEPS) else 1)
