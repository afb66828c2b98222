"""Lints the chart strictly and renders it for every values case into OUTDIR, one file
per object (OUTDIR/<case>/NN-<kind>-<name>.yaml), for kubernetes-validate and yamllint.

    python3 tests/deploy/render.py OUTDIR

Exit status 1 on any lint warning or error, schema violation, or render failure.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import deploylib  # noqa: E402

SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def main(outdir: Path) -> int:
    failures = 0
    for case in deploylib.CASES:
        values = deploylib.case_values(case)
        for kube in deploylib.KUBE_VERSIONS:
            report = deploylib.lint(values, kube)
            problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
            problems_text = [
                f"[{SEVERITY.get(m['severity'], m['severity'])}] {m.get('path')}: {m.get('error')}"
                for m in problems
            ] + [str(e) for e in report.get("errors") or []]
            # One line each, and each once (Helm repeats a schema error per template).
            problems_text = list(dict.fromkeys(" ".join(t.split()) for t in problems_text))
            if problems_text:
                failures += 1
                print(f"FAIL lint --strict ({case}, Kubernetes {kube}):")
                for line in problems_text:
                    print(f"     {line}")
            else:
                print(f"ok   lint --strict ({case}, Kubernetes {kube})")
        try:
            rendered = deploylib.render(values, case)
        except Exception as e:  # the SDK's errors carry Helm's own message
            failures += 1
            print(f"FAIL render ({case}): {type(e).__name__}: {e}")
            continue
        target = outdir / case
        target.mkdir(parents=True, exist_ok=True)
        for i, doc in enumerate(rendered.docs):
            name = f"{i:02d}-{doc['kind'].lower()}-{doc['metadata']['name']}.yaml"
            (target / name).write_text(yaml.safe_dump(doc, sort_keys=False))
        kinds = ", ".join(sorted({d["kind"] for d in rendered.docs}))
        print(f"ok   render ({case}): {len(rendered.docs)} objects: {kinds}")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1])))
