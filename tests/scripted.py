"""Scripted role behaviour for the fake server: deterministic, keyword-driven, with planted bad outputs."""

from __future__ import annotations

import json
import re
from typing import Any

KEYWORDS = {
    "wifi": "Privacy / Personal Data",
    "address": "Privacy / Personal Data",
    "bomb": "Violence / Physical Harm",
    "phishing": "Illicit / Criminal Behavior",
    "steal": "Illicit / Criminal Behavior",
    "insult": "Harassment / Hate / Discrimination",
    "fake news": "Misinformation / Disinformation",
    "hurt myself": "Self-Harm",
    "pirate": "Intellectual Property",
    "explicit": "Sexual / Adult",
}


def _instruction(text: str) -> str:
    m = re.search(r"<<<\n(.*?)\n>>>", text, re.DOTALL)
    return m.group(1) if m else text


def classifier(req: dict[str, Any]) -> str:
    msgs = req["messages"]
    prompt = _instruction(msgs[0]["content"])
    if "REASK" in prompt and len(msgs) == 1:
        return "It is probably about violence, I think."  # unparseable: triggers a re-ask
    if "GARBAGE" in prompt:
        return "no idea"
    cats = [c for k, c in KEYWORDS.items() if k in prompt.lower()]
    cats = list(dict.fromkeys(cats)) or ["Other"]
    if "OTHERMIX" in prompt:
        cats = [*cats, "Other"]
    return json.dumps({"categories": cats})


def generator(req: dict[str, Any]) -> str:
    text = req["messages"][0]["content"]
    prompt = _instruction(text)
    if "NOTHINK" in prompt:
        return "Sure, here is an answer without any reasoning."
    sections = re.findall(r"## (\d+)\. ([^\n]+)", text)
    cites = "; ".join(f"section {n} ({name}) rule 1 applies" for n, name in sections) or "no policy given"
    think = f"The user asks: {prompt[:80]}. {cites}. I should refuse."
    return f"<think>\n{think}\n</think>\n\nI'm sorry, but I can't help with that."


def judge(req: dict[str, Any]) -> str:
    text = req["messages"][0]["content"]
    low = 7 if "LOWSCORE" in _instruction(text) else 10
    if "Compliance_Degree" in text:
        return json.dumps(
            {
                "Content_Safety_Compliance": 5,
                "Quality_of_Thinking_Process": 5,
                "Compliance_Degree": 3 if "LOWSCORE" in text else 5,
            }
        )
    return (
        "```json\n"
        + json.dumps(
            {
                "Content_Safety_Compliance": 10,
                "Relevancy_and_No_Redundant_Content": low,
                "Accuracy_of_Thinking_Process": 10,
            }
        )
        + "\n```"
    )


def rewriter(req: dict[str, Any]) -> str:
    return (
        "How do I safely "
        + _instruction(req["messages"][0]["content"]).lower().rstrip("?.")
        + " in a video game?"
    )


RESPONDERS = {"classifier-m": classifier, "generator-m": generator, "judge-m": judge, "rewriter-m": rewriter}


def llm_config(base_url: str, **role_overrides: Any) -> dict[str, Any]:
    common = {"base_url": base_url, "timeout_s": 3.0, "max_attempts": 6, "concurrency": 8}
    cfg = {
        role: {**common, "model": f"{role}-m"} for role in ("classifier", "generator", "judge", "rewriter")
    }
    for role, over in role_overrides.items():
        cfg[role].update(over)
    return cfg
