"""Guardrails: stop a run that would otherwise finish quietly at the baseline or at zero.

Checked before `liafkd distill` (and `liafkd train`, where they apply) trains anything:
  teacher classes  the teacher's class names (checkpoint meta, else its config) equal the
                   dataset's, by name and order
  teacher weights  every tensor of the teacher's architecture is in its checkpoint;
                   missing ones stop the run unless distill.teacher.allow_missing
  pretrained       model.pretrained filled the whole backbone, unless
                   model.pretrained_allow_missing
  teacher sanity   the teacher's AP50 on distill.checks.teacher_batches validation
                   batches reaches distill.checks.min_teacher_ap50
  step health      one real training batch: every loss term finite; every distillation
                   term non-zero and sending gradient into the student; each distiller
                   part (adapters, selector, ...) reached by some term; no gradient into
                   the teacher. Gradients come from torch.autograd.grad, so no `.grad`
                   is written and nothing steps; buffers (BatchNorm statistics) are
                   restored afterwards.
Every FAIL carries its fix (CheckResult.fix), printed under it in the table and in the
error. A failed check raises GuardrailError, a ConfigError: `liafkd` prints it and exits 2.
`liafkd doctor CONFIG` runs the same checks without training and prints the table.
After training, `complete_summary` adds each loss term's contribution and the teacher's
metrics to summary.json.

Modules: report (a check's verdict, the table), teacher (classes, weights, sanity),
step (step health), run (every check of a run), summary (after training).
"""

from liafkd.engine.guardrails.report import CheckResult, GuardrailError, format_table
from liafkd.engine.guardrails.run import RunChecks, collect_checks, run_checks
from liafkd.engine.guardrails.summary import complete_summary
from liafkd.engine.guardrails.teacher import load_teacher

__all__ = [
    "CheckResult",
    "GuardrailError",
    "RunChecks",
    "collect_checks",
    "complete_summary",
    "format_table",
    "load_teacher",
    "run_checks",
]
