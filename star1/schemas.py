"""Row schemas, declared once. Every stage output is built against (and so validated by) its schema."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

PROMPT = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("source_row", pa.int64(), nullable=False),
        pa.field("source_meta", pa.string()),
    ]
)

LABELLED = PROMPT.append(pa.field("category", pa.list_(pa.string()), nullable=False))
CANDIDATE = LABELLED.append(pa.field("response", pa.string(), nullable=False)).append(
    pa.field("reasoning_source", pa.string())  # inline <think> in the content, or a reasoning field
)
SCORE = pa.struct(
    [
        pa.field(k, pa.int64())
        for k in (
            "Content_Safety_Compliance",
            "Relevancy_and_No_Redundant_Content",
            "Accuracy_of_Thinking_Process",
        )
    ]
)
SCORED = CANDIDATE.append(pa.field("score", SCORE, nullable=False))

BENIGN_SCORE = pa.struct(
    [
        pa.field(k, pa.int64())
        for k in ("Content_Safety_Compliance", "Quality_of_Thinking_Process", "Compliance_Degree")
    ]
)
BENIGN_SCORED = CANDIDATE.append(pa.field("benign_score", BENIGN_SCORE, nullable=False))

FAILED = pa.schema(  # rows whose calls failed transiently: retried by the next run, never rejects
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_row", pa.int64()),
        pa.field("prompt", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
    ]
)

REJECT = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_row", pa.int64()),
        pa.field("prompt", pa.string()),
        pa.field("rule", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("collided_with_id", pa.string()),
        pa.field("collided_with_source", pa.string()),
        pa.field("similarity", pa.float32()),
        pa.field("source_meta", pa.string()),
    ]
)


def to_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Build a table with exactly `schema`'s columns; missing optional fields become null."""
    cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
    return pa.Table.from_pydict(cols, schema=schema)
