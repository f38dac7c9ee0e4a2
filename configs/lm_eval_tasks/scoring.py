"""Per-prompt scoring of the evomerge_* tasks: exact match of the generation with the answer.

It is what lm-eval's registered `exact_match` metric computes with case, punctuation and numbers kept and
no regexes (tests/unit/test_task_scoring.py checks the two agree), without that metric's numpy round trip
per prompt: a search scores 400 prompts per candidate, and there that round trip cost ~3 ms a candidate.
"""


def exact_match(doc: dict, results: list[str]) -> dict[str, float]:
    return {"exact_match": 1.0 if results[0] == doc["answer"] else 0.0}
