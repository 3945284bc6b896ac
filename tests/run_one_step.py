"""Run one step of an environment through the lifecycle, as a run-step task would (no
Prefect around it), so a test can SIGKILL it mid-apply: `python tests/run_one_step.py ENV STEP`.
"""

import sys

from phasegate.config import load_environment
from phasegate.lifecycle import execute
from phasegate.steps import StepContext
from tasks.registry import STEPS

if __name__ == "__main__":
    env, step_id = sys.argv[1:3]
    step = STEPS[step_id](StepContext.for_environment(load_environment(env)))
    print(execute(step, "killed-run").outcome)
