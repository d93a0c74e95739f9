"""Few-shot, completion-style prompts for a small base model (Gemma 3 270M has no chat template).

Each prompt shows two or three worked examples and ends with the label the
model should continue (``Claims:``, ``Verdict:``...); its :class:`Sampling`
stops where the next example would start. The same prompts work with an
instruction-tuned model behind vLLM or an OpenAI-compatible server (the
``openai`` backend sends them as completions).
"""

from __future__ import annotations

from collections.abc import Sequence

from alto_stream.components.llm import Sampling

__all__ = [
    "ANSWER",
    "LIST",
    "SHORT",
    "VERDICT",
    "answer_prompt",
    "claims_prompt",
    "combine_prompt",
    "context_answer_prompt",
    "decompose_prompt",
    "plan_prompt",
    "queries_prompt",
    "revise_prompt",
    "short_answer_prompt",
    "verdict_prompt",
]

ANSWER = Sampling(max_tokens=96, temperature=0.7, top_p=0.95, stop=("\n",))
"""A few sentences of prose, one paragraph (the examples' answers are one line)."""
LIST = Sampling(max_tokens=64, temperature=0.3, top_p=0.9, stop=("\n\n", "\nSentence:", "\n###"))
"""A short list, one item per line."""
SHORT = Sampling(max_tokens=24, temperature=0.2, top_p=0.9, stop=("\n",))
"""One line."""
VERDICT = Sampling(max_tokens=32, temperature=0.1, top_p=0.9, stop=("\n",))
"""A label and a short reason."""

_SEP = "\n\n###\n\n"


def _clip(text: str, words: int) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


def _evidence(passages: Sequence[str], words: int = 60) -> str:
    return "\n".join(f"- {_clip(p, words)}" for p in passages) or "- (none found)"


def answer_prompt(question: str) -> str:
    """Answer a question in a few sentences."""
    return _SEP.join(
        [
            "Question: What is the Eiffel Tower?\n"
            "Answer: The Eiffel Tower is a wrought-iron tower in Paris, France. It was built "
            "for the 1889 World's Fair. It is about 330 metres tall.",
            "Question: Who was Marie Curie?\n"
            "Answer: Marie Curie was a physicist and chemist born in Warsaw. She did "
            "pioneering research on radioactivity. She won two Nobel Prizes.",
            f"Question: {question.strip()}\nAnswer:",
        ]
    )


def context_answer_prompt(question: str, context: Sequence[str]) -> str:
    """Answer a question in a few sentences from the given context."""
    return _SEP.join(
        [
            "Context:\n- Mount Fuji is an active volcano on the island of Honshu, Japan.\n"
            "- At 3,776 metres, it is the highest mountain in Japan.\n"
            "Question: What is Mount Fuji?\n"
            "Answer: Mount Fuji is an active volcano on Honshu, Japan. It is the highest "
            "mountain in Japan, at 3,776 metres.",
            f"Context:\n{_evidence(context)}\nQuestion: {question.strip()}\nAnswer:",
        ]
    )


def claims_prompt(sentence: str) -> str:
    """The atomic, checkable claims of one sentence, one per line ("None" when there is none)."""
    return _SEP.join(
        [
            "Sentence: The Eiffel Tower is a wrought-iron tower in Paris, built in 1889.\n"
            "Claims:\n- The Eiffel Tower is made of wrought iron.\n"
            "- The Eiffel Tower is in Paris.\n- The Eiffel Tower was built in 1889.",
            "Sentence: I hope this helps!\nClaims:\n- None",
            "Sentence: Marie Curie won two Nobel Prizes.\n"
            "Claims:\n- Marie Curie won two Nobel Prizes.",
            f"Sentence: {sentence.strip()}\nClaims:\n-",
        ]
    )


def queries_prompt(claim: str) -> str:
    """Search queries that would find evidence for a claim."""
    return _SEP.join(
        [
            "Claim: The Eiffel Tower was built in 1889.\n"
            "Queries:\n- Eiffel Tower construction year\n- Eiffel Tower history",
            "Claim: Marie Curie was born in Warsaw.\n"
            "Queries:\n- Marie Curie birthplace\n- Marie Curie early life",
            f"Claim: {claim.strip()}\nQueries:\n-",
        ]
    )


def verdict_prompt(claim: str, evidence: Sequence[str]) -> str:
    """True, False or Not enough info, then a short reason."""
    return _SEP.join(
        [
            "Evidence:\n- The Eiffel Tower was completed in 1889 for the World's Fair.\n"
            "Claim: The Eiffel Tower was built in 1889.\n"
            "Verdict: True. The evidence says it was completed in 1889.",
            "Evidence:\n- Marie Curie was born in Warsaw, Poland.\n"
            "Claim: Marie Curie was born in Paris.\n"
            "Verdict: False. The evidence says she was born in Warsaw.",
            "Evidence:\n- The Nile flows into the Mediterranean Sea.\n"
            "Claim: The Nile is the longest river in Africa.\n"
            "Verdict: Not enough info. The evidence does not mention its length.",
            f"Evidence:\n{_evidence(evidence)}\nClaim: {claim.strip()}\nVerdict:",
        ]
    )


def decompose_prompt(question: str) -> str:
    """Sub-questions that together answer a multi-hop question."""
    return _SEP.join(
        [
            "Question: Which of the Beatles was born first?\n"
            "Sub-questions:\n- When was John Lennon born?\n- When was Paul McCartney born?\n"
            "- When was George Harrison born?\n- When was Ringo Starr born?",
            "Question: What is the total population of the capitals of France and Spain?\n"
            "Sub-questions:\n- What is the population of Paris?\n"
            "- What is the population of Madrid?",
            f"Question: {question.strip()}\nSub-questions:\n-",
        ]
    )


def short_answer_prompt(question: str, context: Sequence[str]) -> str:
    """A short answer (a name, a number, a date) from the context."""
    return _SEP.join(
        [
            "Context:\n- Paris is the capital of France, with 2.1 million inhabitants.\n"
            "Question: What is the population of Paris?\nAnswer: 2.1 million",
            "Context:\n- John Lennon (born 9 October 1940) was an English singer.\n"
            "Question: When was John Lennon born?\nAnswer: 9 October 1940",
            f"Context:\n{_evidence(context, 50)}\nQuestion: {question.strip()}\nAnswer:",
        ]
    )


def combine_prompt(question: str, facts: Sequence[tuple[str, str]]) -> str:
    """The final answer to a question from the answers to its sub-questions."""
    lines = "\n".join(f"- {q} {a}" for q, a in facts) or "- (no facts)"
    return _SEP.join(
        [
            "Facts:\n- What is the population of Paris? 2.1 million\n"
            "- What is the population of Madrid? 3.3 million\n"
            "Question: Which capital has more people, Paris or Madrid?\nAnswer: Madrid",
            f"Facts:\n{lines}\nQuestion: {question.strip()}\nAnswer:",
        ]
    )


def plan_prompt(question: str, baseline: str) -> str:
    """Verification questions that check the facts of a baseline answer."""
    return _SEP.join(
        [
            "Question: Who invented the telephone?\n"
            "Baseline: The telephone was invented by Alexander Graham Bell in 1876 in Boston.\n"
            "Verification questions:\n- Who invented the telephone?\n"
            "- When was the telephone invented?\n- Where was the telephone invented?",
            "Question: Who wrote Hamlet?\n"
            "Baseline: Hamlet was written by Christopher Marlowe around 1600.\n"
            "Verification questions:\n- Who wrote Hamlet?\n- When was Hamlet written?",
            f"Question: {question.strip()}\nBaseline: {_clip(baseline, 80)}\n"
            "Verification questions:\n-",
        ]
    )


def revise_prompt(question: str, baseline: str, checks: Sequence[tuple[str, str]]) -> str:
    """The baseline answer, corrected by the verification answers."""
    lines = "\n".join(f"- {q} {a}" for q, a in checks) or "- (no checks)"
    return _SEP.join(
        [
            "Question: What is the capital of Australia?\n"
            "Baseline: The capital of Australia is Sydney.\n"
            "Checks:\n- What is the capital of Australia? Canberra\n"
            "Revised: The capital of Australia is Canberra.",
            f"Question: {question.strip()}\nBaseline: {_clip(baseline, 80)}\n"
            f"Checks:\n{lines}\nRevised:",
        ]
    )
