"""Relabel the feed's training headlines with a trained model, or the majority vote of several, for
a student to train on instead of the LLM's labels (self-training).

    python -m jobs.relabel --teacher finner-data/models/gliner-llm-all                     # one model
    python -m jobs.relabel --teacher models/gliner-s0 models/gliner-s1 models/gliner-s2    # their majority vote
    python -m jobs.train --labels teacher --rows all --name gliner-student                 # then the student

Each teacher predicts at `--threshold` when given, else at the threshold chosen for it on gold
(`jobs.evaluate`), else gliner's 0.5, with the subject rules off: the student learns the models'
own spans, and predicts through the rules as they do. Writes the `teacher_spans` table
(resumable: a re-run with the same teachers skips the rows they labelled; other teachers' labels
are replaced).
"""

from __future__ import annotations

import sys

from finner.models.ensemble import MajorityVote
from finner.models.registry import MODEL_KINDS, load_checkpoint
from finner.pipeline import cli
from finner.progress import say
from finner.relabel import relabel, teacher_fingerprint
from finner.training_data import ALL_ROWS, FEED_ROWS


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("python -m jobs.relabel", __doc__.split("\n\n")[0])
    p.add_argument("--teacher", nargs="+", required=True, metavar="CHECKPOINT", help="trained checkpoint(s); several vote, a span kept where most of them predict it")
    p.add_argument("--kind", choices=MODEL_KINDS, default=MODEL_KINDS[0], help="the checkpoints' model kind")
    p.add_argument("--threshold", type=float, default=None, help="span-score threshold of every teacher; default: each checkpoint's own, chosen on gold by jobs.evaluate")
    p.add_argument("--rows", choices=(FEED_ROWS, ALL_ROWS), default=ALL_ROWS, help="the training headlines to relabel, as jobs.train --rows")
    p.add_argument("--max-rows", type=int, default=0, help="relabel the first N training rows only (what jobs.train --max-train-rows N trains on); 0 = all")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.threshold is not None and not 0 < args.threshold < 1:
        p.error(f"argument --threshold: {args.threshold} is not between 0 and 1")
    if args.max_rows < 0:
        p.error(f"argument --max-rows: {args.max_rows} is below 0")

    def body() -> None:
        members = []
        for path in args.teacher:
            member = load_checkpoint(args.kind, path, threshold=args.threshold)
            member.subject_rules = False
            members.append((path, member))
        teacher = members[0][1] if len(members) == 1 else MajorityVote([m for _, m in members])
        summary = relabel(cli.store_from(args), teacher, teacher_fingerprint(members), every_year=args.rows == ALL_ROWS, limit=args.max_rows, progress=not args.quiet)
        say(summary.line())

    return cli.run(body, args, "relabel")


if __name__ == "__main__":
    sys.exit(main())
