"""Small local copies, in the zoo's alphabet, of two lm-eval built-in benchmarks' datasets: gsm8k
(`openai/gsm8k`, config `main`: `question`, `answer` ending in `#### N`) and ARC-Easy (`allenai/ai2_arc`,
config `ARC-Easy`: `id`, `question`, `choices {text, label}`, `answerKey`). Same columns and splits as the
hub's, so lm-eval's own task YAML (prompt template, filters, metrics) runs on them unchanged, offline, once
`evomerge datasets prefill` has put them in the datasets cache. The rows are the zoo's additions, so the
scores are tiny models' scores; what they demonstrate is the path, not the benchmark.
"""

from __future__ import annotations

import json
from pathlib import Path

from tasks.zoo.skills import choice_records, held_out_examples

DATASETS_DIR = Path(__file__).resolve().parents[2] / "configs" / "datasets"
LABELS = "ABCD"


def gsm8k_rows(split: str, count: int) -> list[dict[str, str]]:
    source = "test" if split == "test" else "search"
    return [
        {"question": e.prompt, "answer": f"{e.prompt}{e.answer}\n#### {e.answer}"}
        for e in held_out_examples("add", source)[:count]
    ]


def arc_rows(split: str, count: int, offset: int = 0) -> list[dict[str, object]]:
    source = "test" if split == "test" else "search"
    rows = []
    for index, record in enumerate(choice_records(source)[offset : offset + count]):
        choices = [str(choice) for choice in record["choices"]]  # type: ignore[union-attr]
        rows.append(
            {
                "id": f"zoo-{split}-{index}",
                "question": record["prompt"],
                "choices": {"text": choices, "label": list(LABELS[: len(choices)])},
                "answerKey": LABELS[int(record["label"])],  # type: ignore[call-overload]
            }
        )
    return rows


def builtin_dataset_files() -> dict[str, list[dict[str, object]]]:
    """Relative path under configs/datasets -> rows."""
    return {
        "gsm8k/train.jsonl": gsm8k_rows("train", 20),
        "gsm8k/test.jsonl": gsm8k_rows("test", 60),
        "ai2_arc-ARC-Easy/train.jsonl": arc_rows("train", 20),
        "ai2_arc-ARC-Easy/validation.jsonl": arc_rows("validation", 20, offset=20),
        "ai2_arc-ARC-Easy/test.jsonl": arc_rows("test", 60),
    }


if __name__ == "__main__":
    for relative, rows in builtin_dataset_files().items():
        path = DATASETS_DIR / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows), encoding="utf-8")
        print(path)
