"""`python -m engine.training.subliminal_measure`: does the owl teacher's preference reach its students?

Asks the base, the teacher (the base under its owl-loving system prompt), the students (`demo-subliminal`,
`demo-subliminal-mixed`, where built) and a control student (trained on a no-preference teacher's numbers; trained
here first when missing) for their favourite animal: prints the probability that the answer starts with the
teacher's animal (mean over the questions) and how many of `--samples` answers at temperature 1 name it.
argparse, not typer: the engine room keeps off the front door's CLI library.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from engine.embedded import EMBEDDED_NAME
from engine.models.specs import DEMO_ADAPTERS
from engine.training.demo_organisms import printing_context, reproduce_control
from engine.training.subliminal import TEACHER_PREFERENCE, measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--control", type=Path, default=Path(tempfile.gettempdir()) / "subliminal-control",
                        help="the control student's directory (trained there first when missing)")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="also write the counts as JSON here")
    args = parser.parse_args()
    if not (args.control / "adapter_config.json").is_file():
        reproduce_control(args.control, printing_context(), args.device)
    students = {"student": "demo-subliminal", "student-mixed": "demo-subliminal-mixed"}
    built = {name: spec for name, spec in students.items() if (DEMO_ADAPTERS[spec] / "adapter_config.json").is_file()}
    for name, spec in students.items():
        if name not in built:
            print(f"{name:14} not built: python -m engine.training.demo_organisms {DEMO_ADAPTERS[spec].name}")
    specs = {"base": EMBEDDED_NAME, **built, "control": str(args.control)}
    result = measure(specs, TEACHER_PREFERENCE, args.samples, args.seed, args.device, teacher=EMBEDDED_NAME)
    for name, row in result["models"].items():
        top = ", ".join(f"{word or '-'} {count}" for word, count in row["top"])
        print(f"{name:14} P(first word {result['animal']}) {row['probability']:.5f}  "
              f"{row['hits']:4}/{row['samples']} samples name it  (top answers: {top})")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
